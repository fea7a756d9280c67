// TLS for the gRPC C++ transport (TlsOptions, peer_server.h): gRPC's own
// credentials from the same PEM files as the lean transport's, watched by
// gRPC's FileWatcherCertificateProvider, the server's and the client's: read
// again every second, new files that do not load leave the previous ones in
// use, and new connections use what was read last. There is no reload on
// demand (SIGHUP): gRPC's watcher has none, and a second is as soon.

#ifndef LCACHE_SRC_PEER_GRPC_GRPC_TLS_H_
#define LCACHE_SRC_PEER_GRPC_GRPC_TLS_H_

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>

#include "absl/status/statusor.h"
#include "lcache/peer_server.h"

namespace lcache::internal {

// InvalidArgument naming a file that cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcServerCredentials(
    const TlsOptions& tls);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> GrpcChannelCredentials(
    const TlsOptions& tls);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_GRPC_GRPC_TLS_H_
