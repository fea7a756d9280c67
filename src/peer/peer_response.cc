#include "peer/peer_response.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "lcache/group.h"
#include "lcache/json_codec.h"
#include "lcache/peer_server.h"

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

absl::Status PeekNotSent(std::string_view address) {
  return absl::UnimplementedError(
      absl::StrCat("lcache: peer ", absl::string_view(address.data(), address.size()),
                   " is not asked to Peek: it does not serve it (a Go node?), or could not be "
                   "reached lately"));
}

MutationRequest RequestOf(const PeerMutation& m) {
  switch (m.kind) {
    case PeerMutation::Kind::kSet:
    case PeerMutation::Kind::kHandoff:
    case PeerMutation::Kind::kReplicate:
    case PeerMutation::Kind::kSetReplica: {
      std::optional<int64_t> ttl_ms;
      if (m.ttl) {
        // Rounded up: a positive ttl under a millisecond must not become 0,
        // which means never.
        ttl_ms = *m.ttl == absl::InfiniteDuration()
                     ? 0
                     : absl::ToInt64Milliseconds(absl::Ceil(*m.ttl, absl::Milliseconds(1)));
      }
      const char* method = m.kind == PeerMutation::Kind::kSet         ? kSetMethod
                           : m.kind == PeerMutation::Kind::kHandoff   ? kHandoffMethod
                           : m.kind == PeerMutation::Kind::kReplicate ? kReplicateMethod
                                                                      : kSetReplicaMethod;
      return {method, wire::EncodeSetRequest(m.group, m.key, m.value, ttl_ms)};
    }
    case PeerMutation::Kind::kRemove:
      return {kRemoveMethod, wire::EncodeGetRequest(m.group, m.key)};
    case PeerMutation::Kind::kInvalidate:
      break;
  }
  return {kInvalidateMethod, wire::EncodeGetRequest(m.group, m.key)};
}

absl::StatusOr<MutationResult> ResultOfMutationResponse(std::string_view address,
                                                         std::string_view message) {
  const absl::string_view peer(address.data(), address.size());
  absl::StatusOr<wire::MutationResponse> decoded = wire::DecodeMutationResponse(message);
  if (!decoded.ok()) {
    return absl::InternalError(
        absl::StrCat("lcache: peer ", peer, ": invalid response: ", decoded.status().message()));
  }
  if (!decoded->err.empty()) return absl::InvalidArgumentError(decoded->err);
  return MutationResult{.unacknowledged = std::move(decoded->unacked)};
}

}  // namespace lcache::internal
