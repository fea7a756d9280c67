// The messages of grpc.health.v1.Health/Check, which a peer server answers
// for probes (peer_server.h). They are protobuf, hand-coded: a whole
// protobuf runtime for one string field and one enum is not worth it.
//
// Thread-safety: pure functions.

#ifndef LCACHE_SRC_PEER_HEALTH_CHECK_H_
#define LCACHE_SRC_PEER_HEALTH_CHECK_H_

#include <optional>
#include <string>
#include <string_view>

namespace lcache::internal {

// The `service` field of a HealthCheckRequest (field 1, string), skipping
// unknown fields as protobuf does; nullopt if the bytes are not a valid
// message.
std::optional<std::string> HealthCheckService(std::string_view message);

// A HealthCheckResponse{status}: SERVING or NOT_SERVING.
std::string HealthCheckResponse(bool serving);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_HEALTH_CHECK_H_
