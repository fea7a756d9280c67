// PeerService: what a server of the peer protocol does with one Get request
// message, whatever transport carried it (grpc_peer_server.cc on gRPC C++,
// h2_peer_server.cc on nghttp2). Both transports answer alike because the
// decisions live here: bad input is INVALID_ARGUMENT, an unknown group and an
// empty key are the Go program's in-band errors, a hit is answered on the
// caller's thread, a miss is Group::GetAsync's: a peer call is made from the
// caller's thread and answered on the transport's, a getter runs on a
// bounded pool of load threads (RESOURCE_EXHAUSTED when it is full), and a
// forwarded request is loaded here, never forwarded again.
//
// Thread-safety: Get may be called from any thread; Stop from one.

#ifndef LCACHE_SRC_PEER_PEER_SERVICE_H_
#define LCACHE_SRC_PEER_PEER_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/json_codec.h"
#include "lcache/peer_server.h"
#include "peer/load_executor.h"

namespace lcache::internal {

// For an UNIMPLEMENTED answer's message.
inline constexpr char kServedMethods[] =
    "/lcache.LCache/Get, Set, Remove, Invalidate, Peek, Handoff and "
    "/grpc.health.v1.Health/Check";

// A reply: OK with the JSON response message, or an error status for the
// call (a gRPC status code and message).
struct PeerReply {
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string message = "";  // the error's text (grpc-message)
  std::string body = "";     // with kOk: the response message

  static PeerReply Error(absl::StatusCode code, std::string message) {
    return {.code = code, .message = std::move(message)};
  }
};

// For a transport that can tell when nobody will read a miss's answer
// (stream reset, connection closed): set `flag` then, and run `tell` soon
// after, on a thread of the transport's but outside its callbacks (it may
// reset a peer call, whose end answers other callers).
struct CallerGone {
  std::shared_ptr<std::atomic<bool>> flag;
  std::function<void()> tell;
};

class PeerService {
 public:
  // REQUIRES: options were validated (ValidatePeerServerOptions).
  explicit PeerService(const PeerServerOptions& options);

  // Answers `message` (one request message, without framing) at once, or,
  // for a miss, returns nullopt and calls `done` exactly once, on whichever
  // thread ends the load: a load thread, the transport's thread that
  // completed a peer call, or this very thread before Get returns (a load
  // that ends at once). `forwarded`: the request carries the forwarding
  // mark. `deadline`: the caller's; peer calls end in time for a fallback,
  // and a load that has not started by then, for every caller waiting on
  // it, is skipped and answered DEADLINE_EXCEEDED. `caller_gone`, for a
  // transport that can tell when nobody will read the answer: on a miss it
  // is filled in (see CallerGone). A load that has not started when every
  // caller waiting on it has gone is skipped and answered CANCELLED, and a
  // peer call in flight for them is reset. Both count in the group's
  // loads_cancelled; a getter that has started runs to its end.
  std::optional<PeerReply> Get(std::string_view message, bool forwarded, absl::Time deadline,
                               std::function<void(PeerReply)> done,
                               CallerGone* caller_gone = nullptr);

  // Answers a Peek request message (a GetRequest) at once: the group's
  // stored copy of the key (Group::Peek), never a load; in-band "key not
  // found" when there is none, for an unknown group, or for an empty key;
  // INVALID_ARGUMENT for an undecodable or oversized message.
  PeerReply Peek(std::string_view message);

  // Whether `method` (an HTTP/2 :path) is Set, Remove, Invalidate or Handoff.
  static bool IsMutationMethod(std::string_view method);

  // Answers the request `message` of a mutation `method` (IsMutationMethod)
  // at once (Invalidate, bad input), or returns nullopt and calls `done`
  // exactly once, on whichever thread ends the mutation (the transport's
  // that completes the last peer call, or this one). Undecodable messages
  // are INVALID_ARGUMENT; an unknown group, an empty or oversized key, a ttl
  // or value the group refuses are answered in-band ({"err"}), as Get's
  // errors are; an owner that cannot be reached is the call's status.
  // Invalidate for a group this node does not serve is a success: it holds
  // no copies of that group's keys. Handoff is answered at once: "" whether
  // or not the value was kept (Group::AcceptHandoff), in-band errors for an
  // unknown group or bad input.
  std::optional<PeerReply> Mutate(std::string_view method, std::string_view message,
                                  bool forwarded, absl::Time deadline,
                                  std::function<void(PeerReply)> done);

  // Answers a grpc.health.v1.Health/Check request message (protobuf): for
  // the service "" or "lcache.LCache", SERVING while the options' `serving`
  // says so (always if it is null) and the server is not draining, else
  // NOT_SERVING; another service is NOT_FOUND, bytes that are not a
  // HealthCheckRequest INVALID_ARGUMENT. Any thread; cheap.
  PeerReply HealthCheck(std::string_view message) const;
  // Health checks answer NOT_SERVING from now on (a server that stops).
  void SetDraining() { draining_.store(true, std::memory_order_release); }

  // From `t` on, loads still queued are answered UNAVAILABLE without
  // running (a server that stops calls it when its grace period begins).
  void SkipLoadsAfter(absl::Time t) {
    loads_->skip_after_ns.store(absl::ToUnixNanos(t), std::memory_order_relaxed);
  }
  // SkipLoadsAfter(skip_after), then joins the load threads once the loads
  // queued have been run or skipped. Idempotent.
  void Stop(absl::Time skip_after);

  size_t max_request_bytes() const { return max_request_bytes_; }

 private:
  // INVALID_ARGUMENT for a message over max_request_bytes; the decoded Get
  // (or Peek, Remove, Invalidate) request.
  absl::Status CheckSize(std::string_view message) const;
  absl::StatusOr<wire::GetRequest> DecodeGet(std::string_view message) const;

  GroupRegistry* const registry_;
  const size_t max_key_bytes_;
  const size_t max_request_bytes_;
  const std::function<bool()> serving_;
  const std::function<bool()> in_cluster_;  // PeerServerOptions::in_cluster
  bool InCluster() const { return in_cluster_ == nullptr || in_cluster_(); }
  static PeerReply OutOfCluster();
  std::atomic<bool> draining_{false};
  // Shared with the flights this server started: one may end after the
  // server (a peer call answered late) and still ask for a load, which a
  // stopped executor refuses.
  struct Loads {
    Loads(int threads, int max_queued) : executor(threads, max_queued) {}
    std::atomic<int64_t> skip_after_ns;
    std::atomic<bool> stopped{false};  // refusals then say "shutting down"
    LoadExecutor executor;
  };
  const std::shared_ptr<Loads> loads_;
  const LoadRunner run_load_;
};

// The options' checks, shared by every transport's Start function.
absl::Status ValidatePeerServerOptions(const PeerServerOptions& options);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_PEER_SERVICE_H_
