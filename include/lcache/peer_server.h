// The peer protocol's server and client options, shared by both transports
// (grpc_peer.h: gRPC C++; h2_peer.h: the lean one on nghttp2). The wire is
// docs/PROTOCOL.md: gRPC over HTTP/2 with JSON messages (json_codec.h),
// byte-compatible with the Go lru_cache, so Go and C++ nodes share one ring.
//
// Methods: /lcache.LCache/Get (the Go program's), Set, Remove, Invalidate,
// Peek and Handoff (ours). A server serves every group of a GroupRegistry; a
// client is a PeerGetter per peer address (peers.h).
//
// Health: a server also answers grpc.health.v1.Health/Check (Kubernetes'
// gRPC probes, grpc_health_probe) for the services "" and "lcache.LCache":
// SERVING while PeerServerOptions::serving says so, else NOT_SERVING; other
// services get NOT_FOUND. Health/Watch is UNIMPLEMENTED.
//
// Forwarding: a C++ node marks the requests it forwards with the metadata
// kForwardedMetadataKey. The receiving node serves a marked request from its
// store, else its getter (LoadScope::kLocalOnly), and never forwards it
// again, so C++ nodes cannot bounce a key between them whatever their views
// of the ring. Requests without the mark (clients, Go nodes) are routed by
// the ring.

#ifndef LCACHE_PEER_SERVER_H_
#define LCACHE_PEER_SERVER_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "lcache/group.h"

namespace lcache {

inline constexpr char kGetMethod[] = "/lcache.LCache/Get";
// Ours (docs/PROTOCOL.md, section 6): a Go node answers them UNIMPLEMENTED.
inline constexpr char kSetMethod[] = "/lcache.LCache/Set";
inline constexpr char kRemoveMethod[] = "/lcache.LCache/Remove";
// Sent by a key's owner to every other node after a Set or Remove.
inline constexpr char kInvalidateMethod[] = "/lcache.LCache/Invalidate";
// The warm cluster's (docs/PROTOCOL.md, section 8): a stored copy only, never
// a load; and a departing node's value for the key's next owner.
inline constexpr char kPeekMethod[] = "/lcache.LCache/Peek";
inline constexpr char kHandoffMethod[] = "/lcache.LCache/Handoff";
// Replication (docs/PROTOCOL.md, section 9): an owner's value for a replica
// holder; and its Set's value, instead of Invalidate, for one.
inline constexpr char kReplicateMethod[] = "/lcache.LCache/Replicate";
inline constexpr char kSetReplicaMethod[] = "/lcache.LCache/SetReplica";
inline constexpr char kForwardedMetadataKey[] = "lcache-forwarded";
inline constexpr char kHealthCheckMethod[] = "/grpc.health.v1.Health/Check";

// TLS for the peer protocol, on both transports (docs/SECURITY.md): PEM
// files. On the lean transport they are read again when they change
// (looked at, at most once a second, when a connection starts) and on
// ReloadTls(); new files that do not load leave the previous ones in use,
// with a warning. The gRPC transport's server has gRPC watch them (every
// 5 s); its client reads them when a peer's channel is made.
struct TlsOptions {
  // This node's certificate chain and key: served to clients and peers, and
  // shown to peers when it calls them (mutual TLS).
  std::string cert_file = {};
  std::string key_file = {};
  // The CAs that sign the cluster's certificates: peers' servers are
  // verified against them (and their names: the host of the peer's
  // address, an IP or a DNS name), and so are clients' certificates. Empty:
  // the system's CAs, and clients' certificates are not verified.
  std::string ca_file = {};
  enum class ClientAuth {
    kNone,     // clients are not asked for a certificate
    kRequest,  // asked; a client without one is served as a client
    kRequire,  // a client without a certificate the CA signed is refused
  };
  ClientAuth client_auth = ClientAuth::kNone;
};

// Limits on what clients can hold (docs/SECURITY.md). The lean transport
// enforces each; on the gRPC transport, gRPC C++ enforces the idle and
// handshake timeouts and the buffered bytes (its resource quota), and
// nothing caps connections (gRPC 1.51 has no such option).
struct PeerServerLimits {
  // Connections beyond this are closed as soon as they are accepted.
  int max_connections = 4096;
  // A connection with no request in progress that has read nothing for this
  // long is sent GOAWAY and closed. Lean clients PING an idle peer every
  // 10 s, so a link between nodes stays up; an idle Go client reconnects on
  // its next call.
  absl::Duration idle_timeout = absl::Seconds(30);
  // A connection that has not sent the HTTP/2 preface and its SETTINGS by
  // then is closed, and a request (headers and body) not complete this long
  // after it began is reset (RST_STREAM CANCEL). A request's wait for its
  // load is not limited by this, but by its own deadline.
  absl::Duration request_timeout = absl::Seconds(10);
  // Bytes of request bodies held for requests not complete yet, per
  // connection and in all: the request that would pass either is reset
  // (RST_STREAM ENHANCE_YOUR_CALM, which gRPC clients report as
  // RESOURCE_EXHAUSTED) and what it held is freed.
  size_t max_connection_buffer_bytes = size_t{4} << 20;
  size_t max_buffer_bytes = size_t{32} << 20;
};

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
  // Whether the node is a member of the cluster now; null: always. While it
  // is not (its etcd lease lapsed: the others dropped it and no longer tell
  // it of Sets and Removes), Get, Peek and mutations are answered
  // UNAVAILABLE, so that clients try another node rather than read copies
  // that may be stale. Called for each of those requests: cheap, no block.
  std::function<bool()> in_cluster = nullptr;

  // What one client can hold (PeerServerLimits).
  PeerServerLimits limits = {};
  // Serve TLS instead of plaintext (only: a plaintext client is refused).
  // Requests marked kForwardedMetadataKey are then served as forwarded only
  // from clients that showed a certificate the CA signed (the cluster's
  // nodes); from others the mark is ignored and the key routed by the ring.
  // Without TLS, every client that reaches the port is trusted with the
  // mark: keep the port on the cluster's network.
  std::optional<TlsOptions> tls = std::nullopt;
  // Told of refused connections, resets and accept failures (at most one
  // line per kind every 10 s, with the count since the last); null: silent.
  // Called on a server thread: must not block.
  std::function<void(const std::string&)> warn = nullptr;
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

  // Reads the TLS files again now (SIGHUP); an error, with the previous
  // files still in use, if they do not load. OK without TLS.
  virtual absl::Status ReloadTls() { return absl::OkStatus(); }
};

struct PeerClientOptions {
  // Deadline of each call (the Go client uses 2 s).
  absl::Duration timeout = absl::Seconds(2);
  // Whether calls carry kForwardedMetadataKey. True for peers; false for
  // clients (the CLI), whose requests the receiving node routes by the ring.
  bool mark_forwarded = true;
};

}  // namespace lcache

#endif  // LCACHE_PEER_SERVER_H_
