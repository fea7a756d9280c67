// The gRPC client of the peer protocol (grpc_peer.h): a PeerGetter over one
// channel per peer, calling /lcache.LCache/Get with JSON bytes through a
// generic stub (there is no generated protobuf stub: the messages are JSON).
//
// Interop limit: the Go client sends `content-type: application/grpc+json`,
// and a Go server picks its codec by that subtype. gRPC C++ 1.51 cannot send
// a subtype: core keeps content-type as a typed value (ContentTypeMetadata)
// that parses every "application/grpc+..." to one enum and always encodes it
// as plain "application/grpc", and the HTTP client filter sets it on every
// call; metadata added through ClientContext cannot change it. So a Go
// server answers this client only if it forces its JSON codec regardless of
// the subtype (grpc.ForceServerCodec); C++ servers do not care.

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lcache/grpc_peer.h"
#include "lcache/json_codec.h"
#include "peer/grpc/grpc_bytes.h"
#include "peer/grpc/grpc_tls.h"
#include "peer/peer_response.h"

namespace lcache {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// What a call's completion needs, shared with the poller thread, which may
// outlive the getter.
struct Peer {
  std::string address;
  PeerClientOptions options;

  // The response message of a call that ended with `status`, or the
  // call's error.
  absl::StatusOr<std::string> Message(const char* method, const grpc::Status& status,
                                      const grpc::ByteBuffer& response,
                                      absl::Duration budget) const;
};

absl::StatusOr<std::string> Peer::Message(const char* method, const grpc::Status& status,
                                          const grpc::ByteBuffer& response,
                                          absl::Duration budget) const {
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return PeerDeadlineExceeded(absl::StrCat("lcache: deadline exceeded calling ", method, " on ",
                                             address, " (after ", absl::FormatDuration(budget),
                                             ")"),
                                budget, options.timeout);
  }
  if (!status.ok()) return FromGrpc(status);
  std::optional<std::string> bytes = internal::BytesOf(response);
  if (!bytes) {
    return absl::InternalError(absl::StrCat("lcache: peer ", address, ": unreadable response"));
  }
  return *std::move(bytes);
}

// One call started by StartGet, from PrepareUnaryCall until its tag comes
// out of the completion queue.
struct AsyncCall {
  grpc::ClientContext ctx;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  grpc::Status status;
  absl::Duration budget;
  const char* method = kGetMethod;
  PeerGetter::Done done;               // a Get's
  PeerGetter::MutateDone mutate_done;  // a Set's, Remove's or Invalidate's
  uint64_t serial = 0;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> reader;
};

// The getter's completion queue and the thread that polls it. Calls end
// here, on a thread of ours: their contexts are destroyed after the call is
// done and never on gRPC's own threads (destroying a context inside gRPC's
// callback aborts gRPC 1.51 with "assertion failed: prior > 0"). Shared by
// the getter and the thread: a getter released by the last `done` it ran
// goes on this very thread, which then only detaches itself and drains.
class Poller {
 public:
  explicit Poller(std::shared_ptr<const Peer> peer) : peer_(std::move(peer)) {}

  static std::shared_ptr<Poller> Start(std::shared_ptr<const Peer> peer) {
    auto poller = std::make_shared<Poller>(std::move(peer));
    poller->thread_ = std::thread([p = poller] { p->Run(); });
    return poller;
  }

  grpc::CompletionQueue* cq() { return &cq_; }

  void Track(AsyncCall* call) {
    std::lock_guard lock(mu_);
    call->serial = next_serial_++;
    in_flight_.insert(call);
  }

  // Cancels `call` if it is still in flight and the same call (serial).
  void Cancel(const AsyncCall* call, uint64_t serial) {
    std::lock_guard lock(mu_);
    auto it = in_flight_.find(const_cast<AsyncCall*>(call));
    if (it != in_flight_.end() && (*it)->serial == serial) (*it)->ctx.TryCancel();
  }
  uint64_t SerialOf(const AsyncCall* call) {
    std::lock_guard lock(mu_);
    return call->serial;
  }

  // Cancels the calls in flight (their `done` gets CANCELLED), lets the
  // queue drain, and waits for the thread unless called on it.
  void Stop() {
    {
      std::lock_guard lock(mu_);
      for (AsyncCall* call : in_flight_) call->ctx.TryCancel();
    }
    cq_.Shutdown();
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }

 private:
  void Run() {
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
      auto* call = static_cast<AsyncCall*>(tag);
      {
        std::lock_guard lock(mu_);
        in_flight_.erase(call);
      }
      absl::StatusOr<std::string> message =
          peer_->Message(call->method, call->status, call->response, call->budget);
      if (call->mutate_done != nullptr) {
        PeerGetter::MutateDone done = std::move(call->mutate_done);
        delete call;
        done(message.ok() ? internal::ResultOfMutationResponse(peer_->address, *message)
                          : absl::StatusOr<MutationResult>(message.status()));
      } else {
        PeerGetter::Done done = std::move(call->done);
        delete call;
        done(message.ok() ? internal::ValueOfGetResponse(peer_->address, *message)
                          : absl::StatusOr<PeerValue>(message.status()));
      }
    }
  }

  const std::shared_ptr<const Peer> peer_;
  grpc::CompletionQueue cq_;
  std::thread thread_;
  std::mutex mu_;
  std::unordered_set<AsyncCall*> in_flight_ ABSL_GUARDED_BY(mu_);
  uint64_t next_serial_ ABSL_GUARDED_BY(mu_) = 1;
};

class GrpcPeerGetter final : public PeerGetter {
 public:
  GrpcPeerGetter(const std::string& address, PeerClientOptions options,
                 std::shared_ptr<grpc::ChannelCredentials> credentials)
      : peer_(std::make_shared<const Peer>(Peer{address, options})),
        stub_(grpc::CreateChannel(address, std::move(credentials))),
        poller_(Poller::Start(peer_)) {}

  ~GrpcPeerGetter() override { poller_->Stop(); }

  absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) override {
    return AwaitStartGet(group, key);
  }

  bool StartGet(std::string_view group, std::string_view key, absl::Time deadline,
                Done done, Cancel* cancel) override {
    auto* call = new AsyncCall();
    call->done = std::move(done);
    Start(call, kGetMethod, wire::EncodeGetRequest(group, key), deadline, cancel);
    return true;
  }

  void StartPeek(std::string_view group, std::string_view key, absl::Time deadline,
                 Done done) override {
    if (!peek_->MaySend()) {
      done(internal::PeekNotSent(peer_->address));
      return;
    }
    auto* call = new AsyncCall();
    call->done = [peek = peek_, done = std::move(done)](absl::StatusOr<PeerValue> v) {
      peek->Learn(v.status());
      done(std::move(v));
    };
    Start(call, kPeekMethod, wire::EncodeGetRequest(group, key), deadline, nullptr);
  }

  void StartMutate(const PeerMutation& mutation, absl::Time deadline, MutateDone done) override {
    auto* call = new AsyncCall();
    call->mutate_done = std::move(done);
    internal::MutationRequest request = internal::RequestOf(mutation);
    Start(call, request.method, std::move(request.message), deadline, nullptr);
  }

 private:
  void Start(AsyncCall* call, const char* method, std::string message, absl::Time deadline,
             Cancel* cancel) {
    call->method = method;
    call->request = internal::ByteBufferOf(std::move(message));
    const absl::Time now = absl::Now();
    const absl::Time call_deadline = std::min(now + peer_->options.timeout, deadline);
    call->budget = call_deadline - now;
    call->ctx.set_deadline(absl::ToChronoTime(call_deadline));
    if (peer_->options.mark_forwarded) call->ctx.AddMetadata(kForwardedMetadataKey, "1");
    call->reader = stub_.PrepareUnaryCall(&call->ctx, method, call->request, poller_->cq());
    poller_->Track(call);
    if (cancel != nullptr) {
      // Read before the call starts: from then on it may end and go at any time.
      const uint64_t serial = poller_->SerialOf(call);
      *cancel = [poller = poller_, call, serial] { poller->Cancel(call, serial); };
    }
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status, call);
  }

  const std::shared_ptr<const Peer> peer_;
  grpc::GenericStub stub_;  // owns the channel, shared by all calls
  const std::shared_ptr<Poller> poller_;
  // Shared with the peeks in flight.
  const std::shared_ptr<internal::PeekSupport> peek_ = std::make_shared<internal::PeekSupport>();
};

// A peer whose channel could not be made: every call fails with why.
class UnusablePeer final : public PeerGetter {
 public:
  explicit UnusablePeer(absl::Status why) : why_(std::move(why)) {}
  absl::StatusOr<PeerValue> Get(std::string_view, std::string_view) override { return why_; }

 private:
  const absl::Status why_;
};

}  // namespace

std::shared_ptr<PeerGetter> NewGrpcPeerGetter(const std::string& address,
                                              PeerClientOptions options,
                                              const std::optional<TlsOptions>& tls) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (tls) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ssl =
        internal::GrpcChannelCredentials(*tls);
    // Unreadable files: a channel that fails every call, saying why.
    credentials = ssl.ok() ? *std::move(ssl) : nullptr;
    if (credentials == nullptr) {
      return std::make_shared<UnusablePeer>(ssl.status());
    }
  }
  return std::make_shared<GrpcPeerGetter>(address, options, std::move(credentials));
}

}  // namespace lcache
