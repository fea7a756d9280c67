// libFuzzer target: the peer protocol's JSON decoders (lcache/json_codec.h),
// which read every message a peer or client sends.
//
// The first byte picks the decoder; the rest is the message. Beyond "no
// crash, leak or UB", what a decoder accepts must survive the encoder: the
// encoding of a decoded message decodes again, and encodes to the same bytes
// (the encoder may normalise once, e.g. invalid UTF-8 to U+FFFD as Go does,
// but never twice).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "lcache/json_codec.h"

namespace {

using namespace lcache::wire;  // NOLINT: a fuzz target

constexpr size_t kAnyKey = size_t{1} << 30;

void Require(bool condition) {
  if (!condition) std::abort();
}

template <typename Decoded, typename Decode, typename Encode>
void RoundTrip(std::string_view json, Decode decode, Encode encode) {
  absl::StatusOr<Decoded> d = decode(json);
  if (!d.ok()) return;
  const std::string once = encode(*d);
  absl::StatusOr<Decoded> again = decode(once);
  Require(again.ok());
  Require(encode(*again) == once);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view json(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      RoundTrip<GetRequest>(
          json, [](std::string_view j) { return DecodeGetRequest(j, kAnyKey); },
          [](const GetRequest& r) { return EncodeGetRequest(r.group, r.key); });
      // The server's own limit: a decoded key is never over it.
      if (absl::StatusOr<GetRequest> r = DecodeGetRequest(json, 16); r.ok()) {
        Require(r->key.size() <= 16);
      }
      break;
    case 1:
      RoundTrip<GetResponse>(json, DecodeGetResponse, [](const GetResponse& r) {
        return EncodeGetResponse(r.value, r.err, r.err.empty() ? r.ttl_ms : std::nullopt);
      });
      if (absl::StatusOr<GetResponse> r = DecodeGetResponse(json); r.ok() && r->ttl_ms) {
        Require(*r->ttl_ms >= 0);
      }
      break;
    case 2:
      RoundTrip<SetRequest>(
          json, [](std::string_view j) { return DecodeSetRequest(j, kAnyKey); },
          [](const SetRequest& r) { return EncodeSetRequest(r.group, r.key, r.value, r.ttl_ms); });
      break;
    case 3:
      RoundTrip<MutationResponse>(json, DecodeMutationResponse, [](const MutationResponse& r) {
        return EncodeMutationResponse(r.err, r.unacked);
      });
      break;
  }
  return 0;
}
