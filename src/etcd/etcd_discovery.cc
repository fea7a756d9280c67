// Two threads: the keeper holds the registration (grant, put, keep-alive
// stream, and a new lease when the old one is lost); the watcher holds the
// peer set (list, then watch from the listing's revision + 1, applying every
// event). Both back off between failures and wake at once on Stop(), which
// cancels their streams.

#include "lcache/etcd_discovery.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "etcd/etcd_client.h"
#include "etcd/etcd_members.h"
#include "spdlog/spdlog.h"

namespace lcache {
namespace {

// Exponential backoff with jitter: 100 ms doubling to 2 s.
class Backoff {
 public:
  absl::Duration Next() {
    const absl::Duration d = next_;
    next_ = std::min(next_ * 2, kMax);
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    return d * jitter(random_);
  }
  void Reset() { next_ = kInitial; }

 private:
  static constexpr absl::Duration kInitial = absl::Milliseconds(100);
  static constexpr absl::Duration kMax = absl::Seconds(2);
  absl::Duration next_ = kInitial;
  std::minstd_rand random_{std::random_device{}()};
};

std::string Message(const absl::Status& s) { return std::string(s.message()); }

}  // namespace

class EtcdDiscovery::Impl {
 public:
  Impl(EtcdOptions options, std::unique_ptr<EtcdClient> client, std::string self,
       PeersCallback on_peers, std::function<void()> before_rejoin)
      : options_(std::move(options)),
        client_(std::move(client)),
        self_(std::move(self)),
        prefix_(options_.service + "/"),
        key_(prefix_ + self_),
        on_peers_(std::move(on_peers)),
        before_rejoin_(std::move(before_rejoin)) {}

  ~Impl() { Stop(); }

  absl::Status Start();
  void Stop();

  bool LeaseLost() const { return lost_.load(std::memory_order_acquire); }
  bool LeaseConfirmed() const {
    return self_.empty() || SteadyNanos() < confirmed_until_ns_.load(std::memory_order_acquire);
  }

 private:
  static int64_t SteadyNanos() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // etcd answered a request sent at `sent_ns` with the lease's TTL, counted
  // from when it read the request: the lease lives at least until this.
  void Confirmed(int64_t sent_ns, int64_t ttl_s) {
    confirmed_until_ns_.store(sent_ns + ttl_s * 1'000'000'000, std::memory_order_release);
  }

  enum class StreamEnd { kBroken, kLeaseGone, kStopping };

  absl::Status Register();
  void KeepRegistered();
  StreamEnd KeepAlive(Backoff& backoff);

  absl::Status List();
  void KeepWatching();
  StreamEnd Watch(Backoff& backoff);
  void Publish();

  // Waits `d` or until Stop(); false if stopping.
  bool Sleep(absl::Duration d);
  bool stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }
  // Makes `context` cancellable by Stop(); false if already stopping.
  bool Track(grpc::ClientContext* context);
  void Untrack(grpc::ClientContext* context);

  const EtcdOptions options_;
  const std::unique_ptr<EtcdClient> client_;
  const std::string self_;
  const std::string prefix_;
  const std::string key_;
  const PeersCallback on_peers_;
  const std::function<void()> before_rejoin_;
  // etcd said the lease is gone, and the node has not registered again yet.
  std::atomic<bool> lost_{false};
  std::atomic<int64_t> confirmed_until_ns_{0};  // steady clock: LeaseConfirmed
  bool presumed_lost_logged_ = false;  // the keeper's

  // The keeper's state (Start() before the thread, then the thread alone).
  int64_t lease_id_ = 0;
  int64_t lease_ttl_s_ = 0;
  absl::Time last_keepalive_ = absl::InfinitePast();

  // The watcher's state (Start() before the thread, then the thread alone).
  internal::EtcdMembers members_{prefix_};
  uint64_t ignored_logged_ = 0;  // members_.ignored() when Publish last said so
  std::vector<std::string> published_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<grpc::ClientContext*> streams_ ABSL_GUARDED_BY(mu_);
  std::thread keeper_;
  std::thread watcher_;
};

absl::Status EtcdDiscovery::Impl::Start() {
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  Backoff backoff;
  auto retry = [&](auto step, const char* what) -> absl::Status {
    while (true) {
      absl::Status s = step();
      if (s.ok()) return s;
      if (absl::Now() >= deadline) {
        return absl::UnavailableError(absl::StrCat(
            "etcd [", absl::StrJoin(options_.endpoints, ","), "] unreachable for ",
            absl::FormatDuration(options_.start_timeout), " (", what, "): ", s.message()));
      }
      Sleep(backoff.Next());
    }
  };
  if (!self_.empty()) {
    // The others' ring first: from the moment this node registers they may
    // route keys to it, and with a ring that names who owned them before it
    // joined, it can ask those owners instead of loading (docs/PROTOCOL.md,
    // section 8). Without it, its first misses would find no ring at all.
    if (absl::Status s = retry([&] { return List(); }, "list"); !s.ok()) return s;
    Publish();
    if (absl::Status s = retry([&] { return Register(); }, "register"); !s.ok()) return s;
  }
  if (absl::Status s = retry([&] { return List(); }, "list"); !s.ok()) {
    if (lease_id_ != 0) (void)client_->RevokeLease(lease_id_);  // best effort
    lease_id_ = 0;
    return s;
  }
  Publish();
  if (!self_.empty()) keeper_ = std::thread([this] { KeepRegistered(); });
  watcher_ = std::thread([this] { KeepWatching(); });
  return absl::OkStatus();
}

void EtcdDiscovery::Impl::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
    for (grpc::ClientContext* c : streams_) c->TryCancel();
  }
  wake_.notify_all();
  if (keeper_.joinable()) keeper_.join();
  if (lease_id_ != 0) {
    if (absl::Status s = client_->RevokeLease(lease_id_); s.ok()) {
      spdlog::info("etcd: revoked lease {:x}, {} deregistered", lease_id_, key_);
    } else {
      spdlog::warn("etcd: cannot revoke lease {:x} ({}); {} goes when it expires", lease_id_,
                   Message(s), key_);
    }
    lease_id_ = 0;
  }
  if (watcher_.joinable()) watcher_.join();
}

bool EtcdDiscovery::Impl::Sleep(absl::Duration d) {
  std::unique_lock lock(mu_);
  wake_.wait_for(lock, absl::ToChronoNanoseconds(d), [this] { return stopping_; });
  return !stopping_;
}

bool EtcdDiscovery::Impl::Track(grpc::ClientContext* context) {
  std::lock_guard lock(mu_);
  if (stopping_) return false;
  streams_.push_back(context);
  return true;
}

void EtcdDiscovery::Impl::Untrack(grpc::ClientContext* context) {
  std::lock_guard lock(mu_);
  std::erase(streams_, context);
}

// --- registration -----------------------------------------------------------

absl::Status EtcdDiscovery::Impl::Register() {
  // Dropped before the node is back on the others' rings: what it held may
  // have changed meanwhile without its hearing of it.
  if (lost_.load(std::memory_order_acquire) && before_rejoin_ != nullptr) before_rejoin_();
  const int64_t sent_ns = SteadyNanos();
  absl::StatusOr<EtcdClient::Lease> lease = client_->GrantLease(options_.lease_ttl);
  if (!lease.ok()) return lease.status();
  if (absl::Status s = client_->Put(key_, self_, lease->id); !s.ok()) {
    (void)client_->RevokeLease(lease->id);  // best effort; it expires anyway
    return s;
  }
  lease_id_ = lease->id;
  lease_ttl_s_ = lease->ttl_seconds;
  last_keepalive_ = absl::Now();
  Confirmed(sent_ns, lease_ttl_s_);
  lost_.store(false, std::memory_order_release);
  spdlog::info("etcd: registered {} under lease {:x} (TTL {} s) at {}", key_, lease_id_,
               lease_ttl_s_, client_->CurrentEndpoint());
  return absl::OkStatus();
}

void EtcdDiscovery::Impl::KeepRegistered() {
  Backoff backoff;
  while (!stopping()) {
    if (lease_id_ == 0) {
      if (absl::Status s = Register(); !s.ok()) {
        const absl::Duration wait = backoff.Next();
        spdlog::warn("etcd: cannot register {} ({}); retrying in {}", key_, Message(s),
                     absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1))));
        Sleep(wait);
        continue;
      }
      backoff.Reset();
    }
    switch (KeepAlive(backoff)) {
      case StreamEnd::kStopping:
        return;
      case StreamEnd::kLeaseGone:
        spdlog::warn("etcd: lease {:x} is gone; registering {} again", lease_id_, key_);
        lease_id_ = 0;
        break;
      case StreamEnd::kBroken:
        // The lease is kept: once etcd answers again it says whether the
        // lease lived (an outage of etcd itself: it renews every lease when
        // it comes back, and nobody was dropped) or expired (a partition of
        // this node: kLeaseGone, then a clean rejoin).
        if (!presumed_lost_logged_ &&
            absl::Now() - last_keepalive_ > absl::Seconds(lease_ttl_s_)) {
          spdlog::warn(
              "etcd: no keep-alive for lease {:x} in its TTL ({} s); the others may have dropped "
              "{}: keeping the lease and asking etcd again",
              lease_id_, lease_ttl_s_, key_);
          presumed_lost_logged_ = true;
        }
        Sleep(backoff.Next());
        break;
    }
  }
}

EtcdDiscovery::Impl::StreamEnd EtcdDiscovery::Impl::KeepAlive(Backoff& backoff) {
  grpc::ClientContext context;
  if (!Track(&context)) return StreamEnd::kStopping;
  int endpoint = 0;
  std::unique_ptr<EtcdClient::KeepAliveStream> stream = client_->OpenKeepAlive(&context, &endpoint);
  // Renew at a third of the TTL, as etcd's own client does, so that two
  // lost renewals in a row still leave the lease alive.
  const absl::Duration period = std::max(absl::Seconds(lease_ttl_s_) / 3, absl::Milliseconds(500));
  StreamEnd end = StreamEnd::kBroken;
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease_id_);
  etcdserverpb::LeaseKeepAliveResponse response;
  while (true) {
    const int64_t sent_ns = SteadyNanos();
    if (!stream->Write(request) || !stream->Read(&response)) break;
    if (response.ttl() <= 0) {  // etcd's answer for an expired or unknown lease
      lost_.store(true, std::memory_order_release);
      end = StreamEnd::kLeaseGone;
      break;
    }
    Confirmed(sent_ns, response.ttl());
    last_keepalive_ = absl::Now();
    presumed_lost_logged_ = false;
    backoff.Reset();
    if (!Sleep(period)) {
      end = StreamEnd::kStopping;
      break;
    }
  }
  context.TryCancel();
  const grpc::Status status = stream->Finish();
  Untrack(&context);
  if (stopping()) return StreamEnd::kStopping;
  if (end == StreamEnd::kBroken) {
    client_->StreamFailed(endpoint, status);
    spdlog::warn("etcd: keep-alive stream for lease {:x} broke: {}", lease_id_,
                 status.error_message());
  }
  return end;
}

// --- discovery ----------------------------------------------------------------

absl::Status EtcdDiscovery::Impl::List() {
  absl::StatusOr<EtcdClient::Listing> listing = client_->ListPrefix(prefix_);
  if (!listing.ok()) return listing.status();
  members_.Reset(listing->kvs, listing->revision);
  return absl::OkStatus();
}

void EtcdDiscovery::Impl::Publish() {
  // The address is the key without the prefix (as the Go program reads it),
  // in key order (EtcdMembers).
  if (members_.ignored() != ignored_logged_) {
    spdlog::warn("etcd: left out {} key(s) under {} that are not host:port addresses",
                 members_.ignored() - ignored_logged_, prefix_);
    ignored_logged_ = members_.ignored();
  }
  std::vector<std::string> peers = members_.Peers();
  if (peers == published_) return;
  published_ = peers;
  on_peers_(published_);
}

void EtcdDiscovery::Impl::KeepWatching() {
  Backoff backoff;
  bool listed = true;  // Start() listed
  while (!stopping()) {
    if (!listed) {
      if (absl::Status s = List(); !s.ok()) {
        const absl::Duration wait = backoff.Next();
        spdlog::warn("etcd: cannot list {} ({}); keeping {} known peers, retrying in {}", prefix_,
                     Message(s), published_.size(),
                     absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1))));
        Sleep(wait);
        continue;
      }
      Publish();
    }
    if (Watch(backoff) == StreamEnd::kStopping) return;
    listed = false;
    Sleep(backoff.Next());
  }
}

EtcdDiscovery::Impl::StreamEnd EtcdDiscovery::Impl::Watch(Backoff& backoff) {
  grpc::ClientContext context;
  if (!Track(&context)) return StreamEnd::kStopping;
  int endpoint = 0;
  std::unique_ptr<EtcdClient::WatchStream> stream = client_->OpenWatch(&context, &endpoint);
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(prefix_);
  create->set_range_end(EtcdClient::PrefixEnd(prefix_));
  create->set_start_revision(members_.NextRevision());
  std::string why = "stream ended";
  if (stream->Write(request)) {
    etcdserverpb::WatchResponse response;
    while (stream->Read(&response)) {
      if (response.created()) {
        backoff.Reset();
        spdlog::info("etcd: watching {} from revision {} at {}", prefix_, members_.NextRevision(),
                     client_->CurrentEndpoint());
      }
      if (members_.Apply(response)) Publish();
      if (response.canceled()) {
        why = response.compact_revision() != 0
                  ? absl::StrCat("revision ", members_.NextRevision(), " compacted (now ",
                                 response.compact_revision(), ")")
                  : absl::StrCat("cancelled: ", response.cancel_reason());
        break;
      }
    }
  }
  context.TryCancel();
  const grpc::Status status = stream->Finish();
  Untrack(&context);
  if (stopping()) return StreamEnd::kStopping;
  if (!status.ok()) {
    client_->StreamFailed(endpoint, status);
    why = status.error_message();
  }
  spdlog::warn("etcd: watch on {} broke ({}); keeping {} known peers, re-listing", prefix_, why,
               published_.size());
  return StreamEnd::kBroken;
}

// --- EtcdDiscovery ------------------------------------------------------------

absl::StatusOr<std::unique_ptr<EtcdDiscovery>> EtcdDiscovery::Start(
    EtcdOptions options, std::string self, PeersCallback on_peers,
    std::function<void()> before_rejoin) {
  if (!on_peers) return absl::InvalidArgumentError("EtcdDiscovery needs a peers callback");
  if (options.service.empty()) return absl::InvalidArgumentError("empty etcd service name");
  if (options.lease_ttl <= absl::ZeroDuration() || options.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd lease TTL and call timeout must be positive");
  }
  // No call may outlast the start timeout (a call waits for etcd to connect).
  options.call_timeout = std::min(options.call_timeout, options.start_timeout);
  absl::StatusOr<std::unique_ptr<EtcdClient>> client = EtcdClient::Create(options);
  if (!client.ok()) return client.status();
  auto impl = std::make_unique<Impl>(std::move(options), *std::move(client), std::move(self),
                                     std::move(on_peers), std::move(before_rejoin));
  if (absl::Status s = impl->Start(); !s.ok()) return s;
  return std::unique_ptr<EtcdDiscovery>(new EtcdDiscovery(std::move(impl)));
}

EtcdDiscovery::EtcdDiscovery(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdDiscovery::~EtcdDiscovery() = default;
void EtcdDiscovery::Stop() { impl_->Stop(); }
bool EtcdDiscovery::LeaseLost() const { return impl_->LeaseLost(); }
bool EtcdDiscovery::LeaseConfirmed() const { return impl_->LeaseConfirmed(); }

}  // namespace lcache
