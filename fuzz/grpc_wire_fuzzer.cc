// libFuzzer target: gRPC framing and the header values a peer sends
// (lcache/grpc_wire.h): the length-prefixed message, grpc-timeout,
// grpc-status, grpc-message's percent-encoding, and host:port.
//
// Properties beyond "no crash, leak or UB": a framed message unframes to
// itself; a parsed timeout is not negative; percent-decoding undoes
// percent-encoding.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "lcache/grpc_wire.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lcache::wire;  // NOLINT: a fuzz target
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  if (absl::StatusOr<std::string_view> m = SingleGrpcMessage(bytes); m.ok()) {
    Require(m->size() + 5 <= bytes.size());
  }
  std::string framed;
  AppendGrpcMessage(bytes, &framed);
  absl::StatusOr<std::string_view> unframed = SingleGrpcMessage(framed);
  Require(unframed.ok() && *unframed == bytes);

  if (std::optional<absl::Duration> t = ParseGrpcTimeout(bytes)) {
    Require(*t >= absl::ZeroDuration());
  }
  Require(PercentDecode(PercentEncode(bytes)) == bytes);
  (void)PercentDecode(bytes);
  (void)GrpcStatusCode(bytes);
  if (std::optional<HostPort> hp = SplitHostPort(bytes)) {
    Require(hp->host.size() + hp->port.size() <= bytes.size());
  }
  return 0;
}
