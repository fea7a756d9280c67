// GrpcLoadClient: lcache-bench's client for the peer protocol (unary gRPC
// calls over HTTP/2, cleartext or TLS), built to cost far less CPU per call
// than the node it measures.
//
// Why not H2Client (src/peer/h2/h2_client.h), the lean peer client? Driving nghttp2's
// session costs about 11k instructions per call, most of them encoding the
// same request headers again and running its stream machinery: as much CPU
// as the node spends answering. A load generator sends one kind of request,
// so here:
//   - a request's header block is encoded once per connection, by nghttp2's
//     HPACK deflater: the first request's block adds the fields to the
//     server's table, and every later one is the same few bytes that refer
//     to them; a call writes a 9-byte frame header with its stream id, that
//     block, and one DATA frame with its message;
//   - an answer is read frame by frame; its header blocks are decoded by
//     nghttp2's HPACK inflater (HPACK stays nghttp2's job).
// What an HTTP/2 client owes its server beyond that is done here: the
// preface and SETTINGS (and acknowledging the server's), the server's
// MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE and MAX_FRAME_SIZE, both
// directions of flow control, PING, RST_STREAM, GOAWAY, CONTINUATION, and
// a new connection when stream ids run out.
//
// TLS is OpenSSL's, on the same socket and loop: the handshake happens
// inside the connection's first reads and writes, SSL_read and SSL_write
// take the place of recv and send, and nothing else changes (the cleartext
// path pays one branch per read and per write for it). OpenSSL writes with
// write(2), so a program using TLS must ignore SIGPIPE (lcache-bench does).
//
// A call fails with the server's grpc-status and grpc-message; UNAVAILABLE
// when the connection cannot be made or is lost; DEADLINE_EXCEEDED at its
// deadline (the stream is reset), never before. A connection that cannot be
// made is tried again after a backoff (100 ms doubling to 1 s); calls started
// meanwhile wait for that attempt and fail with it, so a dead target costs
// one error per call in flight per attempt, not a busy loop of errors. A
// failed TLS handshake is such a failure, with OpenSSL's reason in the
// message.
//
// Threads: none of its own. Everything, `done` included, runs in the
// caller's thread inside Poll; `done` may Start the next call.

#ifndef LCACHE_TOOLS_GRPC_LOAD_CLIENT_H_
#define LCACHE_TOOLS_GRPC_LOAD_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX, kept out of this header

namespace lcache::tools {

class GrpcLoadClient {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::string path = "/lcache.LCache/Get";
    std::string content_type = "application/grpc+json";
    std::vector<std::pair<std::string, std::string>> metadata = {};
    absl::Duration timeout = absl::Seconds(2);

    // TLS, as lcache-cli's -tls-* flags mean it: TLS 1.2 or 1.3, ALPN h2;
    // the server's chain is verified against `ca_file` ("": the system's
    // CAs) and its name against the target's host (an IP address in its IP
    // SANs, a DNS name in its DNS SANs, also sent as SNI). `cert_file` and
    // `key_file`, both or neither: the certificate shown to servers that ask
    // for one (mutual TLS).
    struct Tls {
      std::string ca_file;
      std::string cert_file;
      std::string key_file;
    };
    std::optional<Tls> tls = std::nullopt;  // none: cleartext
  };

  // One call's record, owned by the caller and lent to the client from
  // Start until its `done` runs. A record is reused call after call, so
  // a warm client allocates nothing per call.
  class Call {
   public:
    Call() = default;
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

   private:
    friend class GrpcLoadClient;
    Call* prev_ = nullptr;  // in its connection's waiting list
    Call* next_ = nullptr;
    Call* deadline_prev_ = nullptr;
    Call* deadline_next_ = nullptr;
    size_t target_ = 0;
    uint32_t stream_id_ = 0;  // > 0: sent
    Clock::time_point start_;
    Clock::time_point deadline_;
    std::string request_;  // the message, prefixed
    int http_status_ = 0;
    bool has_grpc_status_ = false;
    absl::StatusCode grpc_status_ = absl::StatusCode::kUnknown;
    std::string grpc_message_;
    std::string body_;
  };

  // The call's outcome: OK and the answer's message (prefix removed, lent
  // until `done` returns), or its status; and its latency, from Start to the
  // poll that saw it end.
  using Done = std::function<void(Call* call, const absl::Status& status, std::string_view message,
                                  absl::Duration latency)>;

  // A client of `targets` (host:port each, resolved here). Connects on the
  // first call to each. Errors: a target that does not resolve, options a
  // request cannot carry, TLS files that do not load.
  static absl::StatusOr<std::unique_ptr<GrpcLoadClient>> Create(
      const std::vector<std::string>& targets, Options options, Done done);
  // Closes the connections. Calls still in flight are dropped: their `done`
  // does not run.
  ~GrpcLoadClient();

  // Starts a unary call with `message` to targets[target % targets.size()]. It goes out at the
  // end of the current Poll round (or the next Poll), and its `done` runs
  // inside a later Poll. REQUIRES: `call` is not in flight.
  void Start(Call* call, size_t target, std::string_view message);

  // Handles what comes and sends what was started until `until`: answers,
  // deadlines, connection attempts.
  void Poll(Clock::time_point until);

  // Calls started whose `done` has not run yet.
  size_t in_flight() const { return in_flight_; }

  class Connection;

 private:
  // A doubly linked list of calls through one pair of a Call's links.
  template <Call* Call::*kPrev, Call* Call::*kNext>
  struct CallQueue {
    Call* head = nullptr;
    Call* tail = nullptr;

    bool empty() const { return head == nullptr; }
    void PushBack(Call* call) {
      call->*kPrev = tail;
      call->*kNext = nullptr;
      (tail != nullptr ? tail->*kNext : head) = call;
      tail = call;
    }
    void Remove(Call* call) {
      (call->*kPrev != nullptr ? call->*kPrev->*kNext : head) = call->*kNext;
      (call->*kNext != nullptr ? call->*kNext->*kPrev : tail) = call->*kPrev;
      call->*kPrev = call->*kNext = nullptr;
    }
    Call* PopFront() {
      Call* call = head;
      if (call != nullptr) Remove(call);
      return call;
    }
  };

  GrpcLoadClient(Options options, Done done);

  void Finish(Call* call, const absl::Status& status, std::string_view message = {});
  void ExpireDeadlines();
  Clock::time_point NextWakeUp(Clock::time_point until) const;

  const Options options_;
  const Done done_;
  const std::string timeout_header_;
  int epoll_fd_ = -1;
  ssl_ctx_st* ssl_ctx_ = nullptr;  // with Options::tls; shared by the connections
  std::vector<std::unique_ptr<Connection>> connections_;
  // Every call in flight, by deadline: all share one timeout, so in the
  // order they started.
  CallQueue<&Call::deadline_prev_, &Call::deadline_next_> deadlines_;
  size_t in_flight_ = 0;
  std::unique_ptr<uint8_t[]> read_buffer_;  // shared by the connections
  bool polling_ = false;
  Clock::time_point now_;  // as of the last wake-up in Poll
};

}  // namespace lcache::tools

#endif  // LCACHE_TOOLS_GRPC_LOAD_CLIENT_H_
