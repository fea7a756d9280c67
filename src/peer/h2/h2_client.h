// H2Client: unary gRPC calls over HTTP/2 with nghttp2 on one libevent loop,
// for the lean peer client (h2_peer_client.cc). (lcache-bench has a leaner
// client of its own, tools/grpc_load_client.h.) We write the gRPC parts ourselves: the message
// prefix, content-type (with its subtype: application/grpc+json, which a Go
// server needs to pick its JSON codec and gRPC C++ cannot send), te,
// grpc-timeout, and reading grpc-status / grpc-message.
//
// A Connection is one HTTP/2 connection to one address, multiplexing every
// call made on it. It connects on the first call, and again on the first
// call after it broke; while a connect attempt has been refused recently
// (backoff: 100 ms doubling to 2 s), calls fail at once with UNAVAILABLE
// instead of each waiting for its own attempt, so a dead peer costs
// microseconds. A connection is also watched (h2_client.cc, "Liveness"): a
// connect unanswered for 1 s is given up, and a connection on which a call
// timed out, or idle for 10 s, is sent a PING; with no answer in 1 s it is
// dead, its calls fail UNAVAILABLE, and the next call connects anew, so a
// healed link is used at once instead of a socket stuck in TCP backoff.
// Every call has a deadline (grpc-timeout for the server, and the client's
// own clock); at the deadline the stream is reset and the call fails with
// DEADLINE_EXCEEDED, never before it. A connection keeps its calls in one
// list ordered by deadline, with one timer for the earliest: calls on a
// connection mostly share one timeout, so a call joins at the tail in O(1)
// and costs no timer of its own (a call with a shorter timeout than those
// before it walks back to its place).
//
// Per call, once warm, the client allocates nothing of its own: call records
// are recycled on the loop thread (those made on another thread are
// allocated there, then recycled too). nghttp2 still allocates its streams.
//
// Threads: the client owns one loop thread; `done` callbacks run on it and
// must not block. Call() may be called from any thread, including from a
// `done` callback.

#ifndef LCACHE_SRC_PEER_H2_H2_CLIENT_H_
#define LCACHE_SRC_PEER_H2_H2_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lcache::internal {

class EventLoop;
class TlsContext;

class H2Client {
 public:
  // The outcome of a call: OK with the response message (prefix removed), or
  // the call's status (grpc-status and grpc-message, or a transport error).
  // The message is lent, not copied: it is valid only while the callback runs.
  using Done = std::function<void(absl::Status status, std::string_view message)>;

  struct CallOptions {
    std::string path;
    std::string content_type = "application/grpc+json";
    std::vector<std::pair<std::string, std::string>> metadata = {};
    absl::Duration timeout = absl::Seconds(2);
  };

  class Connection;

  // Starts the loop thread; an error if it cannot. With `tls`, connections
  // speak TLS (tls.h) and verify the server.
  static absl::StatusOr<std::unique_ptr<H2Client>> Create(std::shared_ptr<TlsContext> tls = nullptr);
  // Fails the calls still in flight (CANCELLED), closes every connection and
  // joins the loop thread. REQUIRES: not called from a `done` callback.
  ~H2Client();

  // A connection to `address` (host:port), not yet connected. It lives until
  // Close (or the client's end).
  std::shared_ptr<Connection> Open(const std::string& address);
  void Close(const std::shared_ptr<Connection>& connection);

  // Sends `message` (prefixed here) as one unary call; `done` runs exactly
  // once, on the loop thread.
  // `message` is copied here (prefixed). With a `done` that std::function
  // keeps inline (a capture of two pointers), a call made on the loop thread
  // allocates nothing of ours once warm.
  // Names a call for Cancel. Holds the connection, not the call.
  struct CallHandle {
    std::shared_ptr<Connection> connection;
    const void* call = nullptr;
    uint64_t serial = 0;
  };

  // The call ends at `deadline` if that comes before options.timeout; a
  // DEADLINE_EXCEEDED then carries the caller-deadline mark when it left
  // the call under half its timeout (PeerDeadlineExceeded, peers.h). With
  // `handle` not null, it is set so that the call can be cancelled.
  void Call(const std::shared_ptr<Connection>& connection, const CallOptions& options,
            std::string_view message, Done done, absl::Time deadline = absl::InfiniteFuture(),
            CallHandle* handle = nullptr);

  // Calls off the call `handle` names, if it has not finished: its stream is
  // reset and its `done` runs with CANCELLED (on the loop thread). Any thread.
  void Cancel(const CallHandle& handle);

  // Runs `task` on the loop thread (soon). Any thread.
  void RunInLoop(std::function<void()> task);

  // OK, or UNAVAILABLE saying why when the link behind `connection` is
  // slow: its PING round trips far above its usual (round_trips.h). While
  // calls go out on a connection, it is PINGed at most once a second for
  // that. Any thread.
  static absl::Status LinkHealth(const Connection& connection);

  // Whether the caller runs on the loop thread.
  bool InLoop() const;

  // The loop the client runs on, for a server that shares it (so that a
  // request and the peer calls it makes stay on one thread). It lives as
  // long as the client.
  EventLoop* event_loop();

  class Impl;

 private:
  explicit H2Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_H2_H2_CLIENT_H_
