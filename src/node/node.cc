// Node: the wiring of one cache node (include/lcache/node.h).

#include "lcache/node.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lcache/grpc_peer.h"
#include "lcache/h2_peer.h"
#include "lcache/log_key.h"
#include "lcache/outlier_ejection.h"
#include "lcache/peer_server.h"
#include "node/admin_http.h"
#include "spdlog/spdlog.h"

namespace lcache {
namespace {

// Logs failed calls to a peer (the group then loads the key itself and counts
// a peer error). Answers from the owner, found or not, are not failures.
class LoggedPeer final : public PeerGetter {
 public:
  LoggedPeer(std::string address, std::shared_ptr<PeerGetter> peer)
      : address_(std::move(address)), peer_(std::move(peer)) {}

  absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) override {
    absl::StatusOr<PeerValue> v = peer_->Get(group, key);
    Log(v.status(), key);
    return v;
  }

  bool StartGet(std::string_view group, std::string_view key, absl::Time deadline,
                Done done, Cancel* cancel) override {
    return peer_->StartGet(group, key, deadline,
                           [this, key = std::string(key), done = std::move(done)](
                               absl::StatusOr<PeerValue> v) {
                             Log(v.status(), key);
                             done(std::move(v));
                           },
                           cancel);
  }

  void StartMutate(const PeerMutation& mutation, absl::Time deadline, MutateDone done) override {
    peer_->StartMutate(
        mutation, deadline,
        [this, kind = mutation.kind, key = std::string(mutation.key),
         done = std::move(done)](absl::StatusOr<MutationResult> r) {
          // An invalidation that did not arrive leaves a copy in place (until
          // -hot-max-age): worth a line, as is a mutation its owner refused.
          // A hand-off is many calls, summed up once at its end; a replica
          // push one per load, counted in replica_push_failures (a holder
          // that is down would fill the log).
          if (!r.ok() && !absl::IsInvalidArgument(r.status()) &&
              kind != PeerMutation::Kind::kHandoff && kind != PeerMutation::Kind::kReplicate) {
            spdlog::warn("peer {} failed {} of key={}: {}", address_,
                         kind == PeerMutation::Kind::kInvalidate   ? "Invalidate"
                         : kind == PeerMutation::Kind::kSet        ? "Set"
                         : kind == PeerMutation::Kind::kSetReplica ? "SetReplica"
                                                                   : "Remove",
                         LogKey(key), r.status().ToString());
          }
          done(std::move(r));
        });
  }

  // Not logged: a peek that fails costs a getter call, which is the cold
  // cluster's ordinary price (counted in peek_misses).
  void StartPeek(std::string_view group, std::string_view key, absl::Time deadline,
                 Done done) override {
    peer_->StartPeek(group, key, deadline, std::move(done));
  }

  absl::Status Slowness() const override { return peer_->Slowness(); }

 private:
  // A call its caller's short deadline cut off, or that this node called
  // off, says nothing about the peer.
  void Log(const absl::Status& status, std::string_view key) const {
    if (!status.ok() && !absl::IsNotFound(status) && !absl::IsInvalidArgument(status) &&
        !absl::IsCancelled(status) && !IsCallerDeadline(status)) {
      // Escaped: a key is any bytes, and a log line must stay one line.
      spdlog::warn("peer {} failed for key={}: {}", address_, LogKey(key), status.ToString());
    }
  }

  const std::string address_;
  const std::shared_ptr<PeerGetter> peer_;
};

// Ejections and returns, one line each (counted in RingPicker::ejection_stats).
void LogEjection(const EjectionEvent& e) {
  const std::string address(e.address);
  if (e.kind == EjectionEvent::Kind::kReturned) {
    spdlog::info("peer {} returned: probe answered after {} ms out", address,
                 absl::ToInt64Milliseconds(e.out_for));
  } else {
    spdlog::warn(
        "peer {} ejected for {} ms (ejection {} in a row) after {}: {}; its keys load "
        "locally",
        address, absl::ToInt64Milliseconds(e.backoff), e.streak,
        e.failed_probe ? "a failed probe" : "consecutive failures", e.last_error.ToString());
  }
}

// Swaps `peers` into the picker and logs what changed.
RingPicker::Change SetAndLogPeers(RingPicker& picker, std::vector<std::string> peers) {
  const std::string listed = absl::StrJoin(peers, ",");
  const size_t count = peers.size();
  RingPicker::Change change = picker.SetPeers(std::move(peers));
  spdlog::info("peers: added [{}] removed [{}]; now {}: [{}]", absl::StrJoin(change.added, ","),
               absl::StrJoin(change.removed, ","), count, listed);
  for (const std::string& bad : change.rejected) spdlog::warn("peer {} rejected", bad);
  return change;
}

absl::Status Validate(const NodeOptions& options) {
  if (options.groups.empty()) {
    return absl::InvalidArgumentError(
        "lcache: NodeOptions.groups is empty (a node serves a group)");
  }
  absl::flat_hash_set<std::string_view> names;
  for (const GroupOptions& group : options.groups) {
    if (!names.insert(group.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("lcache: NodeOptions.groups names \"", group.name, "\" twice"));
    }
  }
  if (options.etcd && !options.peers.empty()) {
    return absl::InvalidArgumentError(
        "lcache: NodeOptions.peers and .etcd exclude each other: give a static peer list or etcd");
  }
  if (options.peer_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("lcache: NodeOptions.peer_timeout must be > 0");
  }
  if (options.drain_delay < absl::ZeroDuration() || options.grace < absl::ZeroDuration() ||
      options.reclaim_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "lcache: NodeOptions.drain_delay, grace and reclaim_interval must be >= 0");
  }
  if (options.handoff_bytes < 0) {
    return absl::InvalidArgumentError("lcache: NodeOptions.handoff_bytes must be >= 0");
  }
  if (options.ring.replication < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: NodeOptions.ring.replication must be >= 1 (1: no replicas), got ",
        options.ring.replication));
  }
  if (options.ring.replication > 1) {
    for (const GroupOptions& group : options.groups) {
      if (group.cache_bytes == 0 && group.replica_cache_bytes == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "lcache: group \"", group.name,
            "\" has an unbounded cache and replication: give it a replica_cache_bytes"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<PeerTransport> ParsePeerTransport(std::string_view name) {
  if (name == "lean") return PeerTransport::kLean;
  if (name == "grpc") return PeerTransport::kGrpc;
  return std::nullopt;
}

std::string_view PeerTransportName(PeerTransport transport) {
  return transport == PeerTransport::kLean ? "lean" : "grpc";
}

// The longest a re-replication after a ring change runs; the keys it did not
// reach keep the replicas they had until their next load.
constexpr absl::Duration kResyncTime = absl::Seconds(60);

class Node::Impl {
 public:
  explicit Impl(NodeOptions options) : options_(std::move(options)) {}

  absl::Status Start();
  void Stop();
  void HandOff();
  ~Impl();

  // Swaps `peers` into the picker, logs the change, and with replication
  // has the replicator give keys their new holders.
  RingPicker::Change SetPeers(std::vector<std::string> peers);
  // With replication: a thread that runs Group::Rereplicate after each ring
  // change (one run at a time; changes during a run make one more run), and
  // Group::RetryInvalidations every second.
  void StartReplicator();
  void StopReplicator();

  // The last reference to a peer getter must go on this thread, never on
  // the getter's own: a gRPC getter released by a callback's tail on its
  // poller thread detaches that thread, which then tears gRPC down while
  // main() exits (a SIGSEGV after "stopped"). So the node holds every
  // getter it made, drops those only it still holds as it makes new ones,
  // and at destruction waits for the others' callbacks to let go.
  void KeepUntilDestroyed(std::shared_ptr<PeerGetter> getter) {
    std::lock_guard lock(made_mu_);
    std::erase_if(made_, [](const std::shared_ptr<PeerGetter>& g) { return g.use_count() == 1; });
    made_.push_back(std::move(getter));
  }

  bool ready() const {
    return !draining_.load(std::memory_order_relaxed) &&
           discovered_.load(std::memory_order_acquire) && InCluster();
  }

  // With etcd: false once etcd said this node's lease expired, until it has
  // registered again (and, with LeaseLapse::kRefuse, while no renewal has
  // been confirmed for a TTL). The others dropped the node meanwhile and stopped
  // telling it of Sets and Removes: it refuses data requests
  // (PeerServerOptions::in_cluster) and drops every copy before it
  // registers (Rejoin).
  bool InCluster() const {
    const EtcdDiscovery* d = lease_.load(std::memory_order_acquire);
    if (d == nullptr) return true;
    if (options_.lease_lapse == NodeOptions::LeaseLapse::kRefuse && !d->LeaseConfirmed()) {
      return false;
    }
    return !d->LeaseLost();
  }
  void Rejoin() {
    for (Group* group : registry_.Groups()) {
      const int64_t dropped = group->InvalidateAll();
      spdlog::warn(
          "group {}: the etcd lease lapsed, so the others may have changed keys without telling "
          "this node: dropped its {} cached keys before registering again",
          group->name(), dropped);
    }
  }

  NodeOptions options_;
  // Read by the servers' readiness callbacks: declared before them, so they
  // outlive them.
  std::atomic<bool> draining_{false};
  std::atomic<bool> discovered_{false};
  bool started_ = false;  // Start succeeded
  GroupRegistry registry_;
  std::mutex made_mu_;
  std::vector<std::shared_ptr<PeerGetter>> made_;  // KeepUntilDestroyed
  // Every group routes through it. Stop() ends the servers, the only callers
  // of Group::Get the node runs, before the picker goes.
  std::unique_ptr<RingPicker> picker_;
  std::shared_ptr<H2PeerClient> lean_client_;  // null with the gRPC transport
  std::unique_ptr<PeerServer> server_;
  std::unique_ptr<EtcdDiscovery> discovery_;
  std::atomic<const EtcdDiscovery*> lease_{nullptr};  // discovery_, for InCluster
  std::unique_ptr<internal::AdminHttpServer> admin_;
  std::once_flag stopped_;

  std::mutex resync_mu_;
  std::condition_variable resync_cv_;
  bool resync_due_ = false;   // GUARDED_BY(resync_mu_)
  bool resync_stop_ = false;  // GUARDED_BY(resync_mu_)
  std::atomic<bool> resync_stopping_{false};  // polled by a run in progress
  std::thread replicator_;
};

RingPicker::Change Node::Impl::SetPeers(std::vector<std::string> peers) {
  const bool had_ring = !picker_->Peers().empty();
  RingPicker::Change change = SetAndLogPeers(*picker_, std::move(peers));
  // Not on the first ring: the store is empty, and a run racing the first
  // loads would push some of them twice.
  if (options_.ring.replication > 1 && had_ring &&
      (!change.added.empty() || !change.removed.empty())) {
    {
      std::lock_guard lock(resync_mu_);
      resync_due_ = true;
    }
    resync_cv_.notify_one();
  }
  return change;
}

void Node::Impl::StartReplicator() {
  replicator_ = std::thread([this] {
    std::unique_lock lock(resync_mu_);
    while (true) {
      // Every second at least: the invalidations holders missed are sent again.
      resync_cv_.wait_for(lock, std::chrono::seconds(1),
                          [this] { return resync_due_ || resync_stop_; });
      if (resync_stop_) return;
      const bool due = resync_due_;
      resync_due_ = false;
      lock.unlock();
      for (Group* group : registry_.Groups()) {
        if (const int64_t n = group->RetryInvalidations(absl::Now() + 2 * kReplicaPushTimeout);
            n > 0) {
          spdlog::info("group {}: {} invalidations replica holders had missed, sent again",
                       group->name(), n);
        }
        if (!due) continue;
        const absl::Time t0 = absl::Now();
        const RereplicateResult r = group->Rereplicate(
            {.deadline = t0 + kResyncTime,
             .stop = [this] { return resync_stopping_.load(std::memory_order_relaxed); }});
        if (r.promoted + r.pushed + r.failed > 0 || r.cut_short) {
          spdlog::info(
              "group {}: after the ring change, {} inherited replicas moved to the store, {} "
              "replicas pushed to new holders ({} failed) in {} ms{}",
              group->name(), r.promoted, r.pushed, r.failed,
              absl::ToInt64Milliseconds(absl::Now() - t0), r.cut_short ? "; cut short" : "");
        }
      }
      lock.lock();
    }
  });
}

void Node::Impl::StopReplicator() {
  if (!replicator_.joinable()) return;
  resync_stopping_.store(true, std::memory_order_relaxed);
  {
    std::lock_guard lock(resync_mu_);
    resync_stop_ = true;
  }
  resync_cv_.notify_one();
  replicator_.join();
}

absl::Status Node::Impl::Start() {
  if (absl::Status s = Validate(options_); !s.ok()) return s;

  std::vector<Group*> groups;
  std::vector<std::string> described;  // for the start line: "store lru, 64 MiB"
  for (GroupOptions& group_options : options_.groups) {
    const int replication = options_.ring.replication;
    if (replication > 1 && group_options.replica_cache_bytes == 0) {
      // With even ownership, each node holds (R - 1) times what it owns.
      group_options.replica_cache_bytes = group_options.cache_bytes * (replication - 1);
    }
    std::string description =
        absl::StrCat("store ", std::string(StorePolicyName(group_options.policy)), ", ",
                     group_options.cache_bytes >> 20, " MiB");
    if (replication > 1) {
      absl::StrAppend(&description, ", ", replication, " copies (replica store ",
                      group_options.replica_cache_bytes >> 20, " MiB)");
    }
    absl::StatusOr<Group*> group = registry_.NewGroup(std::move(group_options));
    if (!group.ok()) return group.status();
    groups.push_back(*group);
    described.push_back(description);
  }
  options_.groups.clear();  // moved into the registry
  if (options_.reclaim_interval > absl::ZeroDuration()) {
    if (absl::Status s = registry_.StartReclaimer(options_.reclaim_interval); !s.ok()) return s;
  }

  const PeerClientOptions client{.timeout = options_.peer_timeout};
  if (options_.transport == PeerTransport::kLean) {
    // One client loop per I/O thread, shared with the server below.
    absl::StatusOr<std::shared_ptr<H2PeerClient>> c = H2PeerClient::Create(
        options_.io_threads, options_.tls, [](const std::string& line) { spdlog::warn("{}", line); });
    if (!c.ok()) return c.status();
    lean_client_ = *std::move(c);
  }
  RingPickerOptions ring = options_.ring;
  if (ring.ejection.on_event == nullptr) ring.ejection.on_event = LogEjection;
  picker_ = std::make_unique<RingPicker>(
      options_.address,
      [this, client, lean = lean_client_](const std::string& peer) -> std::shared_ptr<PeerGetter> {
        auto getter = std::make_shared<LoggedPeer>(
            peer, lean ? lean->NewGetter(peer, client)
                       : NewGrpcPeerGetter(peer, client, options_.tls));
        KeepUntilDestroyed(getter);
        return getter;
      },
      std::move(ring));
  if (options_.ring.replication > 1) StartReplicator();
  if (!options_.etcd) {
    SetPeers(options_.peers);
    discovered_.store(true, std::memory_order_release);
  }
  for (Group* group : groups) group->SetPeerPicker(picker_.get());

  const PeerServerOptions server_options{
      .address = options_.listen_address.empty() ? options_.address : options_.listen_address,
      .registry = &registry_,
      .max_key_bytes = options_.max_key_bytes,
      .load_threads = options_.load_threads,
      .max_queued_loads = options_.max_queued_loads,
      .serving = [this] { return ready(); },
      .in_cluster = [this] { return InCluster(); },
      .limits = options_.server_limits,
      .tls = options_.tls,
      .warn = [](const std::string& line) { spdlog::warn("{}", line); },
  };
  absl::StatusOr<std::unique_ptr<PeerServer>> server =
      options_.transport == PeerTransport::kLean
          ? StartH2PeerServer(server_options, lean_client_)
          : StartGrpcPeerServer(server_options);
  if (!server.ok()) {
    return absl::Status(server.status().code(), absl::StrCat("cannot serve on ",
                                                             server_options.address, ": ",
                                                             server.status().message()));
  }
  server_ = *std::move(server);
  for (size_t i = 0; i < groups.size(); ++i) {
    spdlog::info("lcache-node serving group {} as {} on {} (port {}, {} transport), {}, ring {}",
                 groups[i]->name(), options_.address, server_options.address, server_->port(),
                 PeerTransportName(options_.transport), described[i],
                 RingKindName(options_.ring.kind));
  }

  // Registered only once the listener is up, so that peers never route to a
  // node that cannot answer yet.
  if (options_.etcd) {
    absl::StatusOr<std::unique_ptr<EtcdDiscovery>> started = EtcdDiscovery::Start(
        *options_.etcd, options_.address,
        [this](const std::vector<std::string>& peers) { SetPeers(peers); },
        [this] { Rejoin(); });
    if (!started.ok()) return started.status();
    discovery_ = *std::move(started);
    lease_.store(discovery_.get(), std::memory_order_release);
    discovered_.store(true, std::memory_order_release);
  }

  if (!options_.http_address.empty()) {
    std::optional<TlsOptions> admin_tls;
    if (options_.http_tls != NodeOptions::HttpTls::kNone) {
      if (!options_.tls) {
        return absl::InvalidArgumentError(
            "lcache: HTTPS on the admin listener needs the node's TLS certificate and key");
      }
      admin_tls = options_.tls;
      admin_tls->client_auth = options_.http_tls == NodeOptions::HttpTls::kMutual
                                   ? TlsOptions::ClientAuth::kRequest
                                   : TlsOptions::ClientAuth::kNone;
    }
    absl::StatusOr<std::unique_ptr<internal::AdminHttpServer>> started =
        internal::AdminHttpServer::Start({.address = options_.http_address,
                                          .registry = &registry_,
                                          .picker = picker_.get(),
                                          .ready = [this] { return ready(); },
                                          .max_connections = options_.http_max_connections,
                                          .request_timeout = options_.server_limits.request_timeout,
                                          .max_inflight_loads = options_.load_threads,
                                          .token = options_.http_token,
                                          .tls = std::move(admin_tls)});
    if (!started.ok()) return started.status();
    admin_ = *std::move(started);
    const bool mutual = options_.http_tls == NodeOptions::HttpTls::kMutual;
    const bool token = !options_.http_token.empty();
    spdlog::info("admin {} on {} (port {}), {}",
                 options_.http_tls == NodeOptions::HttpTls::kNone ? "HTTP" : "HTTPS",
                 options_.http_address, admin_->port(),
                 mutual && token ? "a client certificate or the token needed but for probes"
                 : mutual        ? "a client certificate needed but for probes"
                 : token         ? "token needed but for /healthz and /readyz"
                                 : "no token: open to whoever reaches it");
  }
  started_ = true;
  return absl::OkStatus();
}

void Node::Impl::Stop() {
  std::call_once(stopped_, [this] {
    StopReplicator();  // its pushes end within kReplicaPushTimeout
    draining_.store(true, std::memory_order_relaxed);  // /readyz 503, health NOT_SERVING
    if (discovery_) discovery_->Stop();  // revoke the lease: peers stop sending us keys
    // Off the others' rings now: they route our keys to their heirs, which
    // apply the Sets and Removes of them; what we hand off after that is
    // refused there for a while (Group::HandOff).
    if (started_ && server_ != nullptr && options_.handoff_bytes > 0) HandOff();
    if (server_ != nullptr && options_.drain_delay > absl::ZeroDuration()) {
      // Serving on purpose while probes and load balancers notice.
      std::this_thread::sleep_for(absl::ToChronoMilliseconds(options_.drain_delay));
    }
    if (admin_ != nullptr) admin_->StopAccepting();
    if (server_ != nullptr) server_->Shutdown(options_.grace);
    if (admin_ != nullptr) admin_->Stop();  // HTTP requests in flight, like getters, run to the end
    if (started_) {                         // a node that never started has nothing to report
      const EjectionStats ejection = picker_->ejection_stats();
      spdlog::info("ejections {} returns {} probes {} skipped {}", ejection.ejections,
                   ejection.returns, ejection.probes, ejection.skipped);
    }
  });
}

Node::Impl::~Impl() {
  Stop();
  admin_.reset();
  lease_.store(nullptr, std::memory_order_release);
  discovery_.reset();
  server_.reset();
  picker_.reset();
  // A callback ending on a transport thread may still hold a getter for a
  // moment (a Get answered during the drain): wait for it, boundedly.
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  std::vector<std::shared_ptr<PeerGetter>> made;
  {
    std::lock_guard lock(made_mu_);
    made.swap(made_);
  }
  for (const std::shared_ptr<PeerGetter>& g : made) {
    while (g.use_count() > 1 && absl::Now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  made.clear();  // joins the getters' threads, here
  lean_client_.reset();
}

void Node::Impl::HandOff() {
  const absl::Time deadline = absl::Now() + std::min(options_.grace, kMaxHandoffTime);
  for (Group* group : registry_.Groups()) {
    const absl::Time t0 = absl::Now();
    const HandoffResult r =
        group->HandOff({.max_bytes = options_.handoff_bytes, .deadline = deadline});
    spdlog::info(
        "group {}: handed off {} entries ({} bytes) in {} ms; {} failed, {} not sent (no heir, "
        "or one that takes no hand-offs){}",
        group->name(), r.entries, r.bytes, absl::ToInt64Milliseconds(absl::Now() - t0), r.failed,
        r.skipped, r.cut_short ? "; cut short" : "");
  }
}

absl::StatusOr<std::unique_ptr<Node>> Node::Start(NodeOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status s = impl->Start(); !s.ok()) {
    // Nothing keeps running: no drain, no grace for a node that never served.
    impl->options_.drain_delay = absl::ZeroDuration();
    impl->options_.grace = absl::ZeroDuration();
    impl->Stop();
    return s;
  }
  return std::unique_ptr<Node>(new Node(std::move(impl)));
}

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Node::~Node() { Stop(); }

void Node::Stop() { impl_->Stop(); }

absl::StatusOr<RingPicker::Change> Node::SetPeers(std::vector<std::string> peers) {
  if (impl_->options_.etcd) {
    return absl::FailedPreconditionError("lcache: this node's peers come from etcd");
  }
  return impl_->SetPeers(std::move(peers));
}

absl::Status Node::ReloadTls() {
  if (!impl_->options_.tls) return absl::OkStatus();
  absl::Status server = impl_->server_->ReloadTls();
  absl::Status client =
      impl_->lean_client_ != nullptr ? impl_->lean_client_->ReloadTls() : absl::OkStatus();
  absl::Status admin = impl_->admin_ != nullptr ? impl_->admin_->ReloadTls() : absl::OkStatus();
  // A file that does not load first; then the gRPC transport's
  // Unimplemented (the admin listener has still been reloaded).
  absl::Status said = absl::OkStatus();
  for (const absl::Status* s : {&server, &client, &admin}) {
    if (!s->ok() && !absl::IsUnimplemented(*s)) return *s;
    if (said.ok()) said = *s;
  }
  return said;
}

const std::string& Node::address() const { return impl_->options_.address; }
int Node::port() const { return impl_->server_->port(); }
int Node::http_port() const { return impl_->admin_ != nullptr ? impl_->admin_->port() : 0; }
bool Node::ready() const { return impl_->ready(); }
Group* Node::group(std::string_view name) const { return impl_->registry_.GetGroup(name); }
const GroupRegistry& Node::registry() const { return impl_->registry_; }
const RingPicker& Node::picker() const { return *impl_->picker_; }

}  // namespace lcache
