// The lean transport of the peer protocol (peer_server.h): the same wire as
// grpc_peer.h (gRPC over HTTP/2, /lcache.LCache/Get with JSON messages), by our
// own small server on libnghttp2 and libevent instead of gRPC C++. HTTP/2
// and HPACK are nghttp2's job; ours are the gRPC framing, grpc-timeout,
// status trailers, size limits, flow-control settings and GOAWAY on
// shutdown. What a request gets is decided by the same code as on the gRPC
// server (src/peer/peer_service.h), and the same tests run against both.
//
// Why: gRPC C++ costs about 15 µs of server CPU per call here, as much as
// the whole Go node; HTTP/2 itself (nghttpd) about 3 µs. docs/BENCHMARKS.md.

#ifndef LCACHE_H2_PEER_H_
#define LCACHE_H2_PEER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "lcache/peer_server.h"
#include "lcache/peers.h"

namespace lcache {

// The lean client: calls to every peer run on one event-loop thread, over
// one multiplexed HTTP/2 connection per peer (connected on first use,
// reconnected after a failure with backoff; while a peer refuses
// connections, calls to it fail at once instead of each waiting). Its
// requests carry content-type application/grpc+json, as the Go client's
// do, so Go servers pick their JSON codec (gRPC C++ cannot send that).
// Errors are those of NewGrpcPeerGetter. Thread-safe; the getters keep the
// client alive.
//
// `io_threads` loops: a call made on one of them (by a server started on
// this client, see below) stays on it; calls from other threads take the
// loops in turn.
//
// With `tls`, every connection speaks TLS and verifies the server against
// tls->ca_file and the host of its address; tls->cert_file and key_file, if
// set, are shown to servers that ask (mutual TLS). `warn` hears of TLS files
// that changed and do not load (the previous ones stay in use).
class H2PeerClient : public std::enable_shared_from_this<H2PeerClient> {
 public:
  static absl::StatusOr<std::shared_ptr<H2PeerClient>> Create(
      int io_threads = 1, std::optional<TlsOptions> tls = std::nullopt,
      std::function<void(const std::string&)> warn = nullptr);
  virtual ~H2PeerClient() = default;

  // Reads the TLS files again now (SIGHUP); OK without TLS.
  virtual absl::Status ReloadTls() = 0;

  virtual std::shared_ptr<PeerGetter> NewGetter(const std::string& address,
                                                PeerClientOptions options = {}) = 0;
};

// Binds and starts serving with `io_threads` event loops (one accepts and
// hands connections round-robin to all). Errors as StartGrpcPeerServer's.
absl::StatusOr<std::unique_ptr<PeerServer>> StartH2PeerServer(PeerServerOptions options,
                                                              int io_threads = 1);

// The same server on `client`'s event loops, one per I/O thread: a request
// that misses and is forwarded to its owner is read, forwarded, answered by
// the owner and answered to its caller on one thread, with no hand-off
// (lcache::Node does this). The server keeps the client alive.
absl::StatusOr<std::unique_ptr<PeerServer>> StartH2PeerServer(
    PeerServerOptions options, std::shared_ptr<H2PeerClient> client);

}  // namespace lcache

#endif  // LCACHE_H2_PEER_H_
