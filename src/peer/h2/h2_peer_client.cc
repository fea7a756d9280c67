// The lean client of the peer protocol (h2_peer.h): a PeerGetter per peer
// over one H2Client per I/O thread. A call made on one of those threads (a
// server sharing the client's loops, answering a forwarded Get) goes out on
// that thread's own connection to the peer and is answered there: no thread
// hand-off. A call from any other thread goes to the loops in turn.

#include <atomic>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lcache/h2_peer.h"
#include "lcache/json_codec.h"
#include "peer/h2/h2_client.h"
#include "peer/h2/tls.h"
#include "peer/h2/h2_peer_client_loops.h"
#include "peer/peer_response.h"

namespace lcache {
namespace {

class H2PeerClientImpl;

class H2PeerGetter final : public PeerGetter {
 public:
  H2PeerGetter(std::shared_ptr<H2PeerClientImpl> client, std::string address,
               PeerClientOptions options);
  ~H2PeerGetter() override;

  absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) override;
  bool StartGet(std::string_view group, std::string_view key, absl::Time deadline,
                Done done, Cancel* cancel) override;
  void StartMutate(const PeerMutation& mutation, absl::Time deadline, MutateDone done) override;
  void StartPeek(std::string_view group, std::string_view key, absl::Time deadline,
                 Done done) override;
  // Slow if the connection of any loop is.
  absl::Status Slowness() const override;

 private:
  const std::shared_ptr<H2PeerClientImpl> client_;
  // Shared with the calls in flight, which may end after the getter (its
  // connections close, failing them, on their loops, later).
  const std::shared_ptr<const std::string> address_;
  std::vector<std::shared_ptr<internal::H2Client::Connection>> connections_;  // one per loop
  internal::H2Client::CallOptions call_;
  // Shared with the peeks in flight.
  const std::shared_ptr<internal::PeekSupport> peek_ = std::make_shared<internal::PeekSupport>();
};

class H2PeerClientImpl final : public H2PeerClient {
 public:
  H2PeerClientImpl(std::vector<std::unique_ptr<internal::H2Client>> clients,
                   std::shared_ptr<internal::TlsContext> tls)
      : clients_(std::move(clients)), tls_(std::move(tls)) {}

  absl::Status ReloadTls() override {
    return tls_ != nullptr ? tls_->Reload() : absl::OkStatus();
  }

  std::shared_ptr<PeerGetter> NewGetter(const std::string& address,
                                        PeerClientOptions options) override {
    return std::make_shared<H2PeerGetter>(
        std::static_pointer_cast<H2PeerClientImpl>(shared_from_this()), address, options);
  }

  size_t size() const { return clients_.size(); }
  internal::H2Client& client(size_t i) { return *clients_[i]; }

  // The loop the calling thread runs, or the next one in turn.
  size_t PickLoop() {
    for (size_t i = 0; i < clients_.size(); ++i) {
      if (clients_[i]->InLoop()) return i;
    }
    return next_.fetch_add(1, std::memory_order_relaxed) % clients_.size();
  }

 private:
  const std::vector<std::unique_ptr<internal::H2Client>> clients_;
  const std::shared_ptr<internal::TlsContext> tls_;  // null: plaintext
  std::atomic<size_t> next_{0};
};

H2PeerGetter::H2PeerGetter(std::shared_ptr<H2PeerClientImpl> client, std::string address,
                           PeerClientOptions options)
    : client_(std::move(client)), address_(std::make_shared<const std::string>(std::move(address))) {
  for (size_t i = 0; i < client_->size(); ++i) {
    connections_.push_back(client_->client(i).Open(*address_));
  }
  call_.path = kGetMethod;
  call_.timeout = options.timeout;
  if (options.mark_forwarded) call_.metadata.emplace_back(kForwardedMetadataKey, "1");
}

H2PeerGetter::~H2PeerGetter() {
  for (size_t i = 0; i < connections_.size(); ++i) client_->client(i).Close(connections_[i]);
}

bool H2PeerGetter::StartGet(std::string_view group, std::string_view key, absl::Time deadline,
                            Done done, Cancel* cancel) {
  const size_t i = client_->PickLoop();
  internal::H2Client::CallHandle handle;
  client_->client(i).Call(
      connections_[i], call_, wire::EncodeGetRequest(group, key),
      [address = address_, done = std::move(done)](absl::Status status,
                                                    std::string_view message) {
        if (!status.ok()) {
          done(std::move(status));
        } else {
          done(internal::ValueOfGetResponse(*address, message));
        }
      },
      deadline, cancel != nullptr ? &handle : nullptr);
  if (cancel != nullptr) {
    // Holds the client (and so its loops) for as long as the Cancel lives.
    *cancel = [client = client_, i, handle = std::move(handle)] {
      client->client(i).Cancel(handle);
    };
  }
  return true;
}

void H2PeerGetter::StartMutate(const PeerMutation& mutation, absl::Time deadline,
                               MutateDone done) {
  const size_t i = client_->PickLoop();
  internal::MutationRequest request = internal::RequestOf(mutation);
  internal::H2Client::CallOptions call = call_;
  call.path = request.method;
  client_->client(i).Call(
      connections_[i], call, request.message,
      [address = address_, done = std::move(done)](absl::Status status,
                                                    std::string_view message) {
        if (!status.ok()) {
          done(std::move(status));
        } else {
          done(internal::ResultOfMutationResponse(*address, message));
        }
      },
      deadline);
}

void H2PeerGetter::StartPeek(std::string_view group, std::string_view key, absl::Time deadline,
                             Done done) {
  if (!peek_->MaySend()) {
    done(internal::PeekNotSent(*address_));
    return;
  }
  const size_t i = client_->PickLoop();
  internal::H2Client::CallOptions call = call_;
  call.path = kPeekMethod;
  client_->client(i).Call(
      connections_[i], call, wire::EncodeGetRequest(group, key),
      [address = address_, peek = peek_, done = std::move(done)](absl::Status status,
                                                                 std::string_view message) {
        absl::StatusOr<PeerValue> v = status.ok()
                                          ? internal::ValueOfGetResponse(*address, message)
                                          : absl::StatusOr<PeerValue>(std::move(status));
        peek->Learn(v.status());
        done(std::move(v));
      },
      deadline);
}

absl::Status H2PeerGetter::Slowness() const {
  for (const auto& connection : connections_) {
    if (absl::Status s = internal::H2Client::LinkHealth(*connection); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<PeerValue> H2PeerGetter::Get(std::string_view group, std::string_view key) {
  return AwaitStartGet(group, key);
}

}  // namespace

absl::StatusOr<std::shared_ptr<H2PeerClient>> H2PeerClient::Create(
    int io_threads, std::optional<TlsOptions> tls,
    std::function<void(const std::string&)> warn) {
  if (io_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: io_threads must be >= 1, got ", io_threads));
  }
  std::shared_ptr<internal::TlsContext> context;
  if (tls) {
    absl::StatusOr<std::shared_ptr<internal::TlsContext>> made = internal::TlsContext::Create(
        internal::TlsContext::Side::kClient, *std::move(tls), std::move(warn));
    if (!made.ok()) return made.status();
    context = *std::move(made);
  }
  std::vector<std::unique_ptr<internal::H2Client>> clients;
  for (int i = 0; i < io_threads; ++i) {
    absl::StatusOr<std::unique_ptr<internal::H2Client>> client =
        internal::H2Client::Create(context);
    if (!client.ok()) return client.status();
    clients.push_back(*std::move(client));
  }
  return std::make_shared<H2PeerClientImpl>(std::move(clients), std::move(context));
}

namespace internal {

std::vector<EventLoop*> H2PeerClientLoops(H2PeerClient& client) {
  auto& impl = static_cast<H2PeerClientImpl&>(client);
  std::vector<EventLoop*> loops;
  for (size_t i = 0; i < impl.size(); ++i) loops.push_back(impl.client(i).event_loop());
  return loops;
}

}  // namespace internal
}  // namespace lcache
