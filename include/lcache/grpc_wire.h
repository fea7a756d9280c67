// The parts of the gRPC wire protocol over HTTP/2 that a program writes
// itself when HTTP/2 is nghttp2's job (the lean transport, lcache-bench's
// client): the 5-byte length prefix of a message, the grpc-timeout header,
// grpc-status and the percent-encoding of grpc-message (gRPC's
// PROTOCOL-HTTP2.md), and the host:port form of peer addresses. The
// messages themselves are json_codec.h's. All functions are pure and
// thread-safe.

#ifndef LCACHE_GRPC_WIRE_H_
#define LCACHE_GRPC_WIRE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lcache::wire {

inline constexpr size_t kGrpcPrefixBytes = 5;  // compressed flag + 32-bit big-endian length

// Appends `message` with its prefix (uncompressed) to `*out`.
void AppendGrpcMessage(std::string_view message, std::string* out);

// The one message of a unary request body (prefix included). Errors, as
// INVALID_ARGUMENT with a message for the caller: no message, more than one,
// a truncated one, or a compressed one (we announce no compression, so a
// client must not send one).
absl::StatusOr<std::string_view> SingleGrpcMessage(std::string_view body);

// The value of a grpc-timeout header ("1S", "250m", "100000u": at most 8
// digits and one of H M S m u n); nullopt if it is malformed.
std::optional<absl::Duration> ParseGrpcTimeout(std::string_view value);

// A grpc-timeout header value for `timeout`: whole milliseconds, rounded up
// so that a server enforcing it (gRPC C++ does) does not fail the call before
// the client's own deadline; at least 1 ms, at most 8 digits.
std::string GrpcTimeoutHeader(absl::Duration timeout);

// gRPC's status for an answer whose HTTP status is not 200 and that carries
// no grpc-status (PROTOCOL-HTTP2.md).
absl::StatusCode GrpcStatusFromHttp(int http_status);

// grpc-message: bytes outside printable ASCII, and '%', as %XX.
std::string PercentEncode(std::string_view message);
// The inverse; a malformed %XX is kept as it is (gRPC's rule).
std::string PercentDecode(std::string_view message);

// The absl::StatusCode of a grpc-status value; kUnknown if it is not one.
absl::StatusCode GrpcStatusCode(std::string_view value);

// A peer address: "host:port", or "[v6]:port".
struct HostPort {
  std::string host;  // brackets of "[v6]" removed; may be empty ("any", for a listener)
  std::string port;  // as written; may be empty
};
// `address` split at the last ':'; nullopt without one.
std::optional<HostPort> SplitHostPort(std::string_view address);

}  // namespace lcache::wire

#endif  // LCACHE_GRPC_WIRE_H_
