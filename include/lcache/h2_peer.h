// The lean transport of the peer protocol: the same wire as grpc_peer.h
// (gRPC over HTTP/2, /lcache.LCache/Get with JSON messages), served by our
// own small server on libnghttp2 and libevent instead of gRPC C++. HTTP/2
// and HPACK are nghttp2's job; ours are the gRPC framing, grpc-timeout,
// status trailers, size limits, flow-control settings and GOAWAY on
// shutdown. What a request gets is decided by the same code as on the gRPC
// server (src/peer_service.h), and the same tests run against both.
//
// It also answers grpc.health.v1.Health/Check (SERVING; NOT_SERVING once
// Shutdown has begun), so gRPC health probes work on the peer port.
//
// Why: gRPC C++ costs about 15 µs of server CPU per call here, as much as
// the whole Go node; HTTP/2 itself (nghttpd) about 3 µs. docs/BENCHMARKS.md.

#ifndef LCACHE_H2_PEER_H_
#define LCACHE_H2_PEER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "lcache/grpc_peer.h"

namespace lcache {

// Binds and starts serving with `io_threads` event loops (one accepts and
// hands connections round-robin to all). Errors as StartGrpcPeerServer's.
absl::StatusOr<std::unique_ptr<PeerServer>> StartH2PeerServer(PeerServerOptions options,
                                                              int io_threads = 1);

}  // namespace lcache

#endif  // LCACHE_H2_PEER_H_
