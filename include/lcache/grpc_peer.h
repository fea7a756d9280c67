// The peer protocol (peer_server.h) on gRPC C++. Its messages are JSON, not
// protobuf (a codec of our own over gRPC's byte buffers), so this transport
// speaks the Go lru_cache's wire; the lean transport (h2_peer.h) speaks the
// same wire at a fraction of the CPU and is the node's default.

#ifndef LCACHE_GRPC_PEER_H_
#define LCACHE_GRPC_PEER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "lcache/peer_server.h"
#include "lcache/peers.h"

namespace lcache {

// Binds and starts serving; an error if the address cannot be bound or the
// options are invalid.
absl::StatusOr<std::unique_ptr<PeerServer>> StartGrpcPeerServer(PeerServerOptions options);

// A PeerGetter for the node at `address` (host:port). The channel connects
// lazily and reconnects by itself; the getter is cheap to keep. Errors:
//   in-band "lru_cache: key not found"   NotFound with that text
//   in-band "lru_cache: empty key"       InvalidArgument with that text
//   other in-band err text               Unknown with that text
//   gRPC failures                        the gRPC code and message (UNAVAILABLE,
//                                        DEADLINE_EXCEEDED, ...)
//   a response that is not valid JSON    Internal
//
// With `tls`, the channel speaks TLS and verifies the server against
// tls->ca_file; tls->cert_file and key_file are shown to servers that ask.
// Files that cannot be read make a getter whose calls fail, saying so.
std::shared_ptr<PeerGetter> NewGrpcPeerGetter(const std::string& address,
                                              PeerClientOptions options = {},
                                              const std::optional<TlsOptions>& tls = std::nullopt);

}  // namespace lcache

#endif  // LCACHE_GRPC_PEER_H_
