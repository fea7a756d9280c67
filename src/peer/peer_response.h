// The client side of the peer protocol, shared by both transports' clients:
// what the Get response message a peer sent means to the asking node.
//
// Thread-safety: pure functions.

#ifndef LCACHE_SRC_PEER_PEER_RESPONSE_H_
#define LCACHE_SRC_PEER_PEER_RESPONSE_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "lcache/peers.h"

namespace lcache::internal {

// What a Get response message from `address` means. The
// value, with the owner's time to live when it sent one; in-band "key not
// found" as NotFound, "empty key" as InvalidArgument, another err text as
// Unknown; an undecodable message as Internal.
absl::StatusOr<PeerValue> ValueOfGetResponse(std::string_view address, std::string_view message);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_PEER_RESPONSE_H_
