#include "peer/peer_response.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "lcache/group.h"
#include "lcache/json_codec.h"

namespace lcache::internal {

absl::StatusOr<PeerValue> ValueOfGetResponse(std::string_view address, std::string_view message) {
  const absl::string_view peer(address.data(), address.size());
  absl::StatusOr<wire::GetResponse> decoded = wire::DecodeGetResponse(message);
  if (!decoded.ok()) {
    return absl::InternalError(
        absl::StrCat("lcache: peer ", peer, ": invalid response: ", decoded.status().message()));
  }
  if (decoded->err.empty()) {
    ByteView value = ByteView::Adopt(std::move(decoded->value));
    if (!decoded->ttl_ms) return value;
    return PeerValue(std::move(value), absl::Milliseconds(*decoded->ttl_ms));
  }
  if (decoded->err == kKeyNotFoundMessage) return absl::NotFoundError(decoded->err);
  if (decoded->err == kEmptyKeyMessage) return absl::InvalidArgumentError(decoded->err);
  return absl::UnknownError(decoded->err);
}

}  // namespace lcache::internal
