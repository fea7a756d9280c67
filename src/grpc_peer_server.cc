// The gRPC server of the peer protocol (grpc_peer.h).
//
// A generic (untyped) async service, because the messages are JSON bytes and
// there is no generated protobuf service, driven by one completion-queue
// thread: measured here, the completion-queue API costs about 15 µs of server
// CPU per call against about 22 µs for the callback API (issue 3).
//
// Life of a call (one Call object; it is its own tag, and it has at most one
// operation outstanding at a time, so its `step_` says which one completed):
//   kRequested  a call arrived: ask for the next one; an unknown method gets
//               UNIMPLEMENTED, else read the request message
//               (Health/Check is answered on the polling thread, see below)
//   kReading    decode it; errors and hits are answered right here, on the
//               polling thread; a miss goes to the LoadExecutor, whose worker
//               runs Group::Get and starts WriteAndFinish itself (gRPC lets
//               any thread start an operation on a call as long as only one
//               of a kind is outstanding, which the step order guarantees)
//   kFinishing  the answer went out (or the call died): delete the call
//
// grpc.health.v1.Health/Check is decoded and answered by hand (a 2-byte
// protobuf reply) in this same generic service rather than with gRPC's
// default health service: that one is a separate callback-API service with
// threads of its own whose status must be pushed with SetServingStatus,
// while this reads the node's readiness (PeerServerOptions::serving) at the
// moment of each check, from the same callback as the HTTP /readyz.
//
// Shutdown waits for getters already running (they cannot be interrupted);
// loads still queued after the grace period are skipped.
//
// Shutdown order matters: Server::Shutdown returns only once every call has
// been destroyed (gRPC core waits for the calls before it reports shutdown),
// which needs the polling thread to keep running; only then are the workers
// joined (none can start an operation afterwards) and the completion queue
// shut down and drained, since no operation may be started on a queue after
// its Shutdown.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <grpc/grpc.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc_bytes.h"
#include "json_codec.h"
#include "lcache/grpc_peer.h"
#include "lcache/store.h"

namespace lcache {
namespace {

// The in-band answer of a Group::Get result. An error whose message is empty
// still needs a non-empty `err`, or the client would read it as an empty value.
std::string EncodeResult(const absl::StatusOr<ByteView>& v) {
  if (v.ok()) return internal::EncodeGetResponse(v->view(), "");
  const absl::string_view message = v.status().message();
  if (message.empty()) return internal::EncodeGetResponse("", v.status().ToString());
  return internal::EncodeGetResponse("", std::string_view(message.data(), message.size()));
}

// The `service` field of a grpc.health.v1.HealthCheckRequest (field 1,
// string), skipping unknown fields as protobuf does; nullopt if the bytes are
// not a valid message.
std::optional<std::string> HealthCheckService(std::string_view in) {
  size_t pos = 0;
  auto varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && pos < in.size(); shift += 7) {
      const auto byte = static_cast<uint8_t>(in[pos++]);
      *v |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  };
  std::string service;
  while (pos < in.size()) {
    uint64_t tag = 0, n = 0;
    if (!varint(&tag) || (tag >> 3) == 0) return std::nullopt;  // field 0 does not exist
    switch (tag & 7) {
      case 0:  // varint
        if (!varint(&n)) return std::nullopt;
        break;
      case 1:  // 64-bit
        n = 8;
        if (in.size() - pos < n) return std::nullopt;
        pos += n;
        break;
      case 2:  // length-delimited
        if (!varint(&n) || in.size() - pos < n) return std::nullopt;
        if ((tag >> 3) == 1) service.assign(in.substr(pos, n));
        pos += n;
        break;
      case 5:  // 32-bit
        n = 4;
        if (in.size() - pos < n) return std::nullopt;
        pos += n;
        break;
      default:
        return std::nullopt;
    }
  }
  return service;
}

// HealthCheckResponse{status}: field 1, varint. SERVING = 1, NOT_SERVING = 2.
std::string HealthCheckResponse(bool serving) {
  return std::string{0x08, serving ? '\x01' : '\x02'};
}

// Runs loads (misses) on a fixed set of threads. Accepts a task while the
// tasks waiting for a thread stay within `max_queued` beyond the idle
// threads; refuses it otherwise, so a slow getter cannot grow the queue
// without bound. Thread-safe.
class LoadExecutor {
 public:
  LoadExecutor(int threads, int max_queued) : max_queued_(static_cast<size_t>(max_queued)) {
    threads_.reserve(static_cast<size_t>(threads));
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
  }
  ~LoadExecutor() { Stop(); }

  // False, not running the task, when the queue is full; `queued` then says
  // how many tasks were waiting.
  bool TrySubmit(std::function<void()> task, size_t* queued) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      const size_t idle = threads_.size() - running_;
      if (stopping_ || tasks_.size() >= max_queued_ + idle) {
        *queued = tasks_.size();
        return false;
      }
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
    return true;
  }

  // Runs the tasks already queued, then joins the threads. Idempotent.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void Work() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, and nothing left to run
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      ++running_;
      lock.unlock();
      task();
      lock.lock();
      --running_;
    }
  }

  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  size_t running_ = 0;                       // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

class GrpcPeerServer final : public PeerServer {
 public:
  explicit GrpcPeerServer(const PeerServerOptions& options)
      : registry_(options.registry),
        max_key_bytes_(options.max_key_bytes),
        max_request_bytes_(static_cast<size_t>(options.max_request_bytes)),
        serving_(options.serving),
        executor_(options.load_threads, options.max_queued_loads) {}

  ~GrpcPeerServer() override { Shutdown(absl::ZeroDuration()); }

  absl::Status Start(const PeerServerOptions& options);

  int port() const override { return port_; }

  void Shutdown(absl::Duration grace) override;

 private:
  class Call;

  // Asks gRPC for the next incoming call.
  void RequestCall();
  // Answers a request, or hands it to the executor (polling thread).
  void Handle(Call* call);
  // Answers a Health/Check (polling thread).
  void HandleHealthCheck(Call* call);
  void Poll();

  GroupRegistry* const registry_;
  const size_t max_key_bytes_;
  const size_t max_request_bytes_;
  const std::function<bool()> serving_;
  int port_ = 0;

  grpc::AsyncGenericService service_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::unique_ptr<grpc::Server> server_;
  std::thread poller_;
  LoadExecutor executor_;

  // Loads still queued when Shutdown's grace has passed are not started: gRPC
  // has cancelled their calls, so their results would go nowhere. Unix nanos;
  // infinite until Shutdown.
  std::atomic<int64_t> skip_loads_after_ns_{std::numeric_limits<int64_t>::max()};

  std::mutex shutdown_mu_;  // serialises Shutdown calls
  bool shut_down_ = false;  // guarded by shutdown_mu_
};

class GrpcPeerServer::Call {
 public:
  explicit Call(GrpcPeerServer* server) : server_(server), stream_(&ctx_) {}

  void Request() {
    server_->service_.RequestCall(&ctx_, &stream_, server_->cq_.get(), server_->cq_.get(), this);
  }

  // Called on the polling thread when the outstanding operation completed.
  void Proceed(bool ok) {
    switch (step_) {
      case Step::kRequested:
        if (!ok) {  // the server is shutting down
          delete this;
          return;
        }
        server_->RequestCall();
        health_check_ = ctx_.method() == kHealthCheckMethod;
        if (ctx_.method() != kGetMethod && !health_check_) {
          Finish(grpc::Status(
              grpc::StatusCode::UNIMPLEMENTED,
              absl::StrCat("lcache: unknown method ", ctx_.method(), "; this server serves ",
                           kGetMethod, " and ", kHealthCheckMethod)));
          return;
        }
        step_ = Step::kReading;
        stream_.Read(&request_, this);
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
          server_->HandleHealthCheck(this);
        } else {
          server_->Handle(this);
        }
        return;
      case Step::kFinishing:
        delete this;
        return;
    }
  }

  // Sends `body` with status OK. Any thread; the call must not be touched
  // after this returns.
  void Respond(std::string body) {
    response_ = internal::ByteBufferOf(std::move(body));
    step_ = Step::kFinishing;
    stream_.WriteAndFinish(response_, grpc::WriteOptions(), grpc::Status::OK, this);
  }

  void Finish(const grpc::Status& status) {
    step_ = Step::kFinishing;
    stream_.Finish(status, this);
  }

  bool Forwarded() const {
    return ctx_.client_metadata().find(kForwardedMetadataKey) != ctx_.client_metadata().end();
  }

  const grpc::ByteBuffer& request() const { return request_; }

 private:
  enum class Step { kRequested, kReading, kFinishing };

  GrpcPeerServer* const server_;
  grpc::GenericServerContext ctx_;
  grpc::GenericServerAsyncReaderWriter stream_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  Step step_ = Step::kRequested;
  bool health_check_ = false;
};

absl::Status GrpcPeerServer::Start(const PeerServerOptions& options) {
  grpc::ServerBuilder builder;
  // Without this a second server could bind the same port (SO_REUSEPORT) and
  // silently share its traffic; a taken address must be an error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options.address, grpc::InsecureServerCredentials(), &port_);
  builder.RegisterAsyncGenericService(&service_);
  // gRPC itself refuses (RESOURCE_EXHAUSTED) only messages far over the
  // limit; those just over it are read and refused as INVALID_ARGUMENT by
  // Handle, with a message that says what the limit is.
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<int64_t>(int64_t{options.max_request_bytes} * 4, std::numeric_limits<int>::max())));
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
    executor_.Stop();
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
  while (cq_->Next(&tag, &ok)) static_cast<Call*>(tag)->Proceed(ok);
}

void GrpcPeerServer::Handle(Call* call) {
  if (call->request().Length() > max_request_bytes_) {
    call->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              absl::StrCat("lru_cache: request of ", call->request().Length(),
                                           " bytes is over the limit of ", max_request_bytes_)));
    return;
  }
  absl::StatusOr<internal::GetRequest> request =
      internal::DecodeGetRequest(internal::BytesOf(call->request()).value_or(""), max_key_bytes_);
  if (!request.ok()) {
    call->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(request.status().message())));
    return;
  }
  // Unknown group and empty key: the Go program's in-band answers.
  Group* group = registry_->GetGroup(request->group);
  if (group == nullptr) {
    call->Respond(internal::EncodeGetResponse("", kKeyNotFoundMessage));
    return;
  }
  group->CountServerRequest();
  if (request->key.empty()) {
    call->Respond(internal::EncodeGetResponse("", kEmptyKeyMessage));
    return;
  }
  if (std::optional<ByteView> hit = group->GetIfCached(request->key)) {
    call->Respond(internal::EncodeGetResponse(hit->view(), ""));
    return;
  }
  const LoadScope scope = call->Forwarded() ? LoadScope::kLocalOnly : LoadScope::kAnywhere;
  size_t queued = 0;
  const bool accepted = executor_.TrySubmit(
      [this, call, group, scope, key = std::move(request->key)] {
        if (absl::GetCurrentTimeNanos() > skip_loads_after_ns_.load(std::memory_order_relaxed)) {
          call->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "lcache: server shutting down"));
          return;
        }
        call->Respond(EncodeResult(group->Get(key, scope)));
      },
      &queued);
  if (!accepted) {
    call->Finish(
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     absl::StrCat("lru_cache: server overloaded, ", queued, " loads queued")));
  }
}

void GrpcPeerServer::HandleHealthCheck(Call* call) {
  std::optional<std::string> service;
  if (std::optional<std::string> bytes = internal::BytesOf(call->request())) {
    service = HealthCheckService(*bytes);
  }
  if (!service) {
    call->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "lcache: not a grpc.health.v1.HealthCheckRequest"));
    return;
  }
  if (!service->empty() && *service != "lcache.LCache") {
    call->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                              absl::StrCat("lcache: unknown service \"", *service,
                                           "\" (this server has \"\" and \"lcache.LCache\")")));
    return;
  }
  call->Respond(HealthCheckResponse(serving_ == nullptr || serving_()));
}

void GrpcPeerServer::Shutdown(absl::Duration grace) {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  // Waits for the calls in flight until the deadline, then cancels them, and
  // returns once every call is gone (the poller keeps finishing them).
  const absl::Time deadline = absl::Now() + grace;
  skip_loads_after_ns_.store(absl::ToUnixNanos(deadline), std::memory_order_relaxed);
  server_->Shutdown(absl::ToChronoTime(deadline));
  executor_.Stop();
  cq_->Shutdown();
  poller_.join();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeerServer>> StartGrpcPeerServer(PeerServerOptions options) {
  if (options.registry == nullptr) {
    return absl::InvalidArgumentError("lcache: PeerServerOptions.registry is null");
  }
  if (options.address.empty()) {
    return absl::InvalidArgumentError(
        "lcache: PeerServerOptions.address is empty (expected host:port)");
  }
  if (options.max_key_bytes == 0 || options.max_key_bytes > kMaxStoreKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: PeerServerOptions.max_key_bytes must be in [1, ", kMaxStoreKeyBytes,
                     "], got ", options.max_key_bytes));
  }
  if (options.max_request_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: PeerServerOptions.max_request_bytes must be > 0, got ",
                     options.max_request_bytes));
  }
  if (options.load_threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: PeerServerOptions.load_threads must be >= 1, got ", options.load_threads));
  }
  if (options.max_queued_loads < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lcache: PeerServerOptions.max_queued_loads must be >= 0, got ", options.max_queued_loads));
  }
  auto server = std::make_unique<GrpcPeerServer>(options);
  if (absl::Status s = server->Start(options); !s.ok()) return s;
  return server;
}

}  // namespace lcache
