// The gRPC server of the peer protocol (grpc_peer.h).
//
// A generic (untyped) async service, because the messages are JSON bytes and
// there is no generated protobuf service, driven by one completion-queue
// thread: measured here, the completion-queue API costs about 15 µs of server
// CPU per call against about 22 µs for the callback API (docs/BENCHMARKS.md).
//
// Life of a call (one Call object; it is its own tag, and it has at most one
// operation outstanding at a time, so its `step_` says which one completed):
//   kRequested  a call arrived: ask for the next one; an unknown method gets
//               UNIMPLEMENTED, else read the request message
//   kReading    hand it to the PeerService (peer_service.h): errors and hits
//               are answered right here, on the polling thread; a miss runs
//               on a load thread, which starts WriteAndFinish itself (gRPC lets
//               any thread start an operation on a call as long as only one
//               of a kind is outstanding, which the step order guarantees)
//   kFinishing  the answer went out (or the call died)
// A second tag, the call's address with its low bit set, comes out when the
// call is done (AsyncNotifyWhenDone): if the client cancelled it (a reset
// stream, a deadline, a closed connection), a miss's load is told that its
// caller left (PeerService's CallerGone), as on the lean server. A call is
// deleted once both have come out, or at once if it never started (gRPC
// then never returns the second tag, grpc/grpc#10136). All tags come out on
// the polling thread, so the two flags need no lock.
//
// grpc.health.v1.Health/Check is answered by hand in this same generic
// service (PeerService::HealthCheck, a 2-byte protobuf reply) rather than
// with gRPC's default health service: that one is a separate service with
// threads of its own whose status must be pushed with SetServingStatus, while
// this reads the node's readiness (PeerServerOptions::serving) at the moment
// of each check, from the same callback as the HTTP /readyz.
//
// Shutdown waits for getters already running (they cannot be interrupted);
// loads still queued after the grace period are skipped.
//
// Shutdown order matters: Server::Shutdown returns once every call has
// ended or been cancelled, which needs the polling thread to keep running.
// A cancelled miss may still be answered later (its peer call ends on a
// client's thread after gRPC has let go of the call), so the server then
// waits for the replies it handed out; only then is the completion queue
// shut down and drained, since no operation may be started on a queue after
// its Shutdown.

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include <grpc/grpc.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lcache/grpc_peer.h"
#include "peer/grpc/grpc_bytes.h"
#include "peer/grpc/grpc_tls.h"
#include "peer/peer_service.h"

namespace lcache {
namespace {

class GrpcPeerServer final : public PeerServer {
 public:
  explicit GrpcPeerServer(const PeerServerOptions& options) : service_(options) {}

  ~GrpcPeerServer() override { Shutdown(absl::ZeroDuration()); }

  absl::Status Start(const PeerServerOptions& options);

  int port() const override { return port_; }

  void Shutdown(absl::Duration grace) override;

  absl::Status ReloadTls() override {
    if (!tls_) return absl::OkStatus();
    return absl::UnimplementedError(
        "lcache: the gRPC transport reads its TLS files again every second by itself (gRPC's "
        "file watcher), and has no reload on demand");
  }

 private:
  class Call;

  // Asks gRPC for the next incoming call.
  void RequestCall();
  // Answers a request, or hands it to the executor (polling thread).
  void Handle(Call* call);
  // Runs `start`, which starts one operation on the queue, unless Shutdown
  // has closed it; returns whether it ran. gRPC aborts the process when an
  // operation starts on a queue that has been shut down, and the poller
  // (or a late reply) may be about to start one when Shutdown gets there.
  template <typename F>
  bool StartOp(F start) {
    std::lock_guard lock(awaiting_mu_);
    if (closed_) return false;
    start();
    return true;
  }
  void Poll();

  internal::PeerService service_;
  int port_ = 0;
  bool tls_ = false;

  grpc::AsyncGenericService generic_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::unique_ptr<grpc::Server> server_;
  std::thread poller_;

  std::mutex shutdown_mu_;  // serialises Shutdown calls
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;

  // Calls handed to the service whose reply has not been sent yet. A miss's
  // reply may come after gRPC has let go of its call (a cancelled call no
  // longer holds up Server::Shutdown), from a peer call answered late on a
  // client's thread; the queue and the server must outlive that Reply.
  std::mutex awaiting_mu_;
  std::condition_variable awaiting_cv_;
  int awaiting_ ABSL_GUARDED_BY(awaiting_mu_) = 0;
  // No operation starts any more: set by Shutdown once awaiting_ is 0, just
  // before it shuts the queue down.
  bool closed_ ABSL_GUARDED_BY(awaiting_mu_) = false;
};

class GrpcPeerServer::Call {
 public:
  explicit Call(GrpcPeerServer* server) : server_(server), stream_(&ctx_) {}

  void Request() {
    ctx_.AsyncNotifyWhenDone(DoneTag());
    if (!server_->StartOp([this] {
          server_->generic_.RequestCall(&ctx_, &stream_, server_->cq_.get(), server_->cq_.get(),
                                        this);
        })) {
      delete this;  // never requested: no tag of it will come
    }
  }

  // Called on the polling thread when the outstanding operation completed.
  void Proceed(bool ok) {
    switch (step_) {
      case Step::kRequested:
        if (!ok) {  // the server is shutting down; the done tag never comes
          delete this;
          return;
        }
        server_->RequestCall();
        health_check_ = ctx_.method() == kHealthCheckMethod;
        mutation_ = internal::PeerService::IsMutationMethod(ctx_.method());
        peek_ = ctx_.method() == kPeekMethod;
        if (ctx_.method() != kGetMethod && !health_check_ && !mutation_ && !peek_) {
          Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                              absl::StrCat("lcache: unknown method ", ctx_.method(),
                                           "; this server serves ", internal::kServedMethods)));
          return;
        }
        step_ = Step::kReading;
        if (!server_->StartOp([this] { stream_.Read(&request_, this); })) Abandon();
        return;
      case Step::kReading:
        // Not ok: the client sent no message, or gRPC refused it (too large:
        // gRPC has already failed the call with RESOURCE_EXHAUSTED).
        if (!ok) {
          Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "lcache: expected one request message"));
          return;
        }
        if (health_check_) {
          Reply(server_->service_.HealthCheck(internal::BytesOf(request_).value_or("")));
        } else if (peek_) {
          Reply(server_->service_.Peek(internal::BytesOf(request_).value_or("")));
        } else {
          server_->Handle(this);
        }
        return;
      case Step::kFinishing:
        finished_ = true;
        if (done_) delete this;
        return;
    }
  }

  // The done tag: the call is over, answered or cancelled.
  void Done() {
    done_ = true;
    if (ctx_.IsCancelled() && caller_gone_.flag != nullptr) {
      caller_gone_.flag->store(true, std::memory_order_relaxed);
      if (caller_gone_.tell != nullptr) caller_gone_.tell();  // our thread, no gRPC callback
    }
    if (finished_) delete this;
  }

  void* DoneTag() { return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(this) | 1); }
  static bool IsDoneTag(void* tag) { return (reinterpret_cast<uintptr_t>(tag) & 1) != 0; }
  static Call* OfDoneTag(void* tag) {
    return reinterpret_cast<Call*>(reinterpret_cast<uintptr_t>(tag) & ~uintptr_t{1});
  }

  internal::CallerGone* caller_gone() { return &caller_gone_; }

  // Sends the reply. Any thread; the call must not be touched after this
  // returns.
  void Reply(internal::PeerReply reply) {
    if (reply.code != absl::StatusCode::kOk) {
      Finish(grpc::Status(static_cast<grpc::StatusCode>(reply.code), std::move(reply.message)));
      return;
    }
    response_ = internal::ByteBufferOf(std::move(reply.body));
    step_ = Step::kFinishing;
    if (!server_->StartOp([this] {
          stream_.WriteAndFinish(response_, grpc::WriteOptions(), grpc::Status::OK, this);
        })) {
      Abandon();
    }
  }

  void Finish(const grpc::Status& status) {
    step_ = Step::kFinishing;
    if (!server_->StartOp([&] { stream_.Finish(status, this); })) Abandon();
  }

  // The queue is closed (Shutdown): the call ends unanswered. gRPC has
  // cancelled it, so its done tag comes (or came) and frees it. Only on the
  // polling thread: a reply from elsewhere is counted in awaiting_, which
  // keeps the queue open until it is sent.
  void Abandon() {
    finished_ = true;
    if (done_) delete this;
  }

  bool mutation() const { return mutation_; }
  const std::string& method() const { return ctx_.method(); }

  // Marked, by a client trusted with the mark: with TLS, one whose
  // certificate the CA signed (PeerServerOptions::tls).
  bool Forwarded() const {
    if (ctx_.client_metadata().find(kForwardedMetadataKey) == ctx_.client_metadata().end()) {
      return false;
    }
    return !server_->tls_ || ctx_.auth_context()->IsPeerAuthenticated();
  }

  const grpc::ByteBuffer& request() const { return request_; }
  absl::Time deadline() const { return absl::FromChrono(ctx_.deadline()); }

 private:
  enum class Step { kRequested, kReading, kFinishing };

  GrpcPeerServer* const server_;
  grpc::GenericServerContext ctx_;
  grpc::GenericServerAsyncReaderWriter stream_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  Step step_ = Step::kRequested;
  bool health_check_ = false;
  bool mutation_ = false;  // Set, Remove, Invalidate or Handoff
  bool peek_ = false;
  bool finished_ = false;  // the last operation's tag came out
  bool done_ = false;      // the done tag came out
  internal::CallerGone caller_gone_;  // a miss's, filled in by PeerService::Get
};

absl::Status GrpcPeerServer::Start(const PeerServerOptions& options) {
  grpc::ServerBuilder builder;
  // Without this a second server could bind the same port (SO_REUSEPORT) and
  // silently share its traffic; a taken address must be an error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options.tls) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ssl =
        internal::GrpcServerCredentials(*options.tls);
    if (!ssl.ok()) {
      shut_down_ = true;
      service_.Stop(absl::Now());
      return ssl.status();
    }
    credentials = *std::move(ssl);
    tls_ = true;
  }
  builder.AddListeningPort(options.address, credentials, &port_);
  builder.RegisterAsyncGenericService(&generic_);
  // gRPC itself refuses (RESOURCE_EXHAUSTED) only messages far over the
  // limit; those just over it are read and refused as INVALID_ARGUMENT by
  // Handle, with a message that says what the limit is.
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<int64_t>(int64_t{options.max_request_bytes} * 4, std::numeric_limits<int>::max())));
  // The limits gRPC C++ has (PeerServerLimits): idle connections closed,
  // handshakes bounded, and the memory its buffers may take (the resource
  // quota). It cannot cap connections, reset one slow request or pause
  // accepting at the descriptor limit (docs/SECURITY.md).
  const PeerServerLimits& limits = options.limits;
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             static_cast<int>(std::min<int64_t>(
                                 absl::ToInt64Milliseconds(limits.idle_timeout),
                                 std::numeric_limits<int>::max())));
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             static_cast<int>(std::min<int64_t>(
                                 absl::ToInt64Milliseconds(limits.request_timeout),
                                 std::numeric_limits<int>::max())));
  grpc::ResourceQuota quota("lcache-peer-server");
  quota.Resize(limits.max_buffer_bytes);
  builder.SetResourceQuota(quota);
  cq_ = builder.AddCompletionQueue();
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    if (server_ != nullptr) {
      server_->Shutdown();
      cq_->Shutdown();
      void* tag;
      bool ok;
      while (cq_->Next(&tag, &ok)) {
      }
      server_.reset();
    }
    // Without a server the queue is destroyed as is (gRPC shuts it down).
    cq_.reset();
    shut_down_ = true;
    service_.Stop(absl::Now());
    return absl::UnavailableError(absl::StrCat("lcache: cannot listen on \"", options.address,
                                               "\" (expected a free host:port, e.g. "
                                               "127.0.0.1:9001 or 0.0.0.0:0)"));
  }
  RequestCall();
  poller_ = std::thread([this] { Poll(); });
  return absl::OkStatus();
}

void GrpcPeerServer::RequestCall() { (new Call(this))->Request(); }

void GrpcPeerServer::Poll() {
  void* tag;
  bool ok;
  while (cq_->Next(&tag, &ok)) {
    if (Call::IsDoneTag(tag)) {
      Call::OfDoneTag(tag)->Done();
    } else {
      static_cast<Call*>(tag)->Proceed(ok);
    }
  }
}

void GrpcPeerServer::Handle(Call* call) {
  // gRPC has read the whole message (within 4x the limit); PeerService
  // refuses what is over the limit itself, with a message that says so.
  const std::string message = internal::BytesOf(call->request()).value_or("");
  bool open;
  {
    std::lock_guard lock(awaiting_mu_);
    open = !closed_;
    if (open) ++awaiting_;
  }
  if (!open) {
    call->Abandon();
    return;
  }
  // Either way a reply is handed back, Shutdown may be waiting for it: a
  // decrement without the notify left it asleep for good once the count was
  // 0 (a cache hit answered at once, just before a shutdown).
  auto handed_back = [this] {
    std::lock_guard lock(awaiting_mu_);  // notified under the lock: Shutdown may end us next
    --awaiting_;
    awaiting_cv_.notify_all();
  };
  auto reply_later = [call, handed_back](internal::PeerReply r) {
    call->Reply(std::move(r));
    handed_back();
  };
  std::optional<internal::PeerReply> reply =
      call->mutation()
          ? service_.Mutate(call->method(), message, call->Forwarded(), call->deadline(),
                            std::move(reply_later))
          : service_.Get(message, call->Forwarded(), call->deadline(), std::move(reply_later),
                         call->caller_gone());
  if (reply) {
    call->Reply(*std::move(reply));
    handed_back();
  }
}

void GrpcPeerServer::Shutdown(absl::Duration grace) {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  // Waits for the calls in flight until the deadline, then cancels them, and
  // returns once every call is gone (the poller keeps finishing them).
  const absl::Time deadline = absl::Now() + grace;
  service_.SetDraining();
  // Loads still queued after the grace are not started: gRPC has cancelled
  // their calls by then, so their results would go nowhere.
  service_.SkipLoadsAfter(deadline);
  server_->Shutdown(absl::ToChronoTime(deadline));
  service_.Stop(deadline);
  {
    // The replies still to come are bounded: loads have ended (Stop), and a
    // peer call ends by its deadline, sooner when its callers have gone
    // (gRPC has cancelled every call by now).
    std::unique_lock lock(awaiting_mu_);
    awaiting_cv_.wait(lock, [this] { return awaiting_ == 0; });
    closed_ = true;
  }
  cq_->Shutdown();
  poller_.join();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeerServer>> StartGrpcPeerServer(PeerServerOptions options) {
  if (absl::Status s = internal::ValidatePeerServerOptions(options); !s.ok()) return s;
  auto server = std::make_unique<GrpcPeerServer>(options);
  if (absl::Status s = server->Start(options); !s.ok()) return s;
  return server;
}

}  // namespace lcache
