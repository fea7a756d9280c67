// The gRPC transport of the peer protocol (wire-protocol.md, "Peer RPC").
//
// One unary method, /lcache.LCache/Get, whose messages are JSON (not
// protobuf), so Go nodes of the original lru_cache and C++ nodes share one
// ring. The server side serves every group of a GroupRegistry; the client
// side is a PeerGetter per peer address, over one reused channel.
//
// Both sides sit behind small interfaces (PeerServer, PeerGetter) so that a
// leaner transport of the same wire protocol can replace this one and be held
// to the same tests.
//
// Health: the server also answers grpc.health.v1.Health/Check (for
// Kubernetes' gRPC probes and grpc_health_probe) for the service "" and
// "lcache.LCache": SERVING while PeerServerOptions::serving says so, else
// NOT_SERVING; other services get NOT_FOUND. Health/Watch is UNIMPLEMENTED.
//
// Forwarding: a C++ node marks the requests it forwards with the metadata
// kForwardedMetadataKey. The receiving node serves a marked request from its
// store, else its getter (LoadScope::kLocalOnly), and never forwards it
// again, so C++ nodes cannot bounce a key between them whatever their views
// of the ring. Requests without the mark (clients, Go nodes) are routed by
// the ring.

#ifndef LCACHE_GRPC_PEER_H_
#define LCACHE_GRPC_PEER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/group.h"
#include "lcache/peers.h"

namespace lcache {

inline constexpr char kGetMethod[] = "/lcache.LCache/Get";
inline constexpr char kForwardedMetadataKey[] = "lcache-forwarded";
inline constexpr char kHealthCheckMethod[] = "/grpc.health.v1.Health/Check";

struct PeerServerOptions {
  // host:port to listen on; port 0 picks a free one (see PeerServer::port()).
  std::string address = {};
  // The groups to serve. Not owned; must outlive the server.
  GroupRegistry* registry = nullptr;
  // Requests with a longer key get INVALID_ARGUMENT.
  size_t max_key_bytes = 4096;
  // Larger request messages get INVALID_ARGUMENT; those over four times the
  // limit are refused by gRPC itself, as RESOURCE_EXHAUSTED, unread.
  int max_request_bytes = 64 << 10;
  // Threads that run loads (misses). Hits are answered without them.
  int load_threads = 8;
  // Loads waiting for a thread beyond this get RESOURCE_EXHAUSTED, so a slow
  // getter cannot make the queue grow without bound.
  int max_queued_loads = 1024;
  // Whether Health/Check answers SERVING; null: always while the server runs.
  // Called on the polling thread for each health check: must be cheap and
  // must not block. A node returns false once it drains (and until it has
  // joined the cluster).
  std::function<bool()> serving = nullptr;
};

// A running server. Thread-safe.
class PeerServer {
 public:
  virtual ~PeerServer() = default;

  // The port it listens on.
  virtual int port() const = 0;

  // Stops accepting calls, lets the calls in flight finish within `grace`,
  // cancels the rest, and returns when everything has stopped. Idempotent;
  // the destructor calls it with no grace.
  virtual void Shutdown(absl::Duration grace) = 0;
};

// Binds and starts serving; an error if the address cannot be bound or the
// options are invalid.
absl::StatusOr<std::unique_ptr<PeerServer>> StartGrpcPeerServer(PeerServerOptions options);

struct PeerClientOptions {
  // Deadline of each call (the Go client uses 2 s).
  absl::Duration timeout = absl::Seconds(2);
  // Whether calls carry kForwardedMetadataKey. True for peers; false for
  // clients (the CLI), whose requests the receiving node routes by the ring.
  bool mark_forwarded = true;
};

// A PeerGetter for the node at `address` (host:port). The channel connects
// lazily and reconnects by itself; the getter is cheap to keep. Errors:
//   in-band "lru_cache: key not found"   NotFound with that text
//   in-band "lru_cache: empty key"       InvalidArgument with that text
//   other in-band err text               Unknown with that text
//   gRPC failures                        the gRPC code and message (UNAVAILABLE,
//                                        DEADLINE_EXCEEDED, ...)
//   a response that is not valid JSON    Internal
std::shared_ptr<PeerGetter> NewGrpcPeerGetter(const std::string& address,
                                              PeerClientOptions options = {});

}  // namespace lcache

#endif  // LCACHE_GRPC_PEER_H_
