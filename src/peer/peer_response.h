// The client side of the peer protocol, shared by both transports' clients:
// what the response message a peer sent means to the asking node, and the
// request message of a mutation.
//
// Thread-safety: pure functions.

#ifndef LCACHE_SRC_PEER_PEER_RESPONSE_H_
#define LCACHE_SRC_PEER_PEER_RESPONSE_H_

#include <atomic>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "lcache/peers.h"

namespace lcache::internal {

// What a Get response message from `address` means. The
// value, with the owner's time to live when it sent one; in-band "key not
// found" as NotFound, "empty key" as InvalidArgument, another err text as
// Unknown; an undecodable message as Internal.
absl::StatusOr<PeerValue> ValueOfGetResponse(std::string_view address, std::string_view message);

// Whether a peer serves Peek, learned from its answers: until the first
// one, a single peek is in flight at a time and the others are refused at
// once (their keys load), so a Go node is sent at most one. Thread-safe.
class PeekSupport {
 public:
  // Whether a peek may be sent now.
  bool MaySend();
  // What a peek sent after MaySend() got.
  void Learn(const absl::Status& status);

 private:
  enum State : int { kUnknown, kProbing, kYes, kNo };
  std::atomic<int> state_{kUnknown};
};

// What StartPeek answers, without a call, when PeekSupport says no.
absl::Status PeekNotSent(std::string_view address);

// The method and request message that carry `mutation`.
struct MutationRequest {
  const char* method;
  std::string message;
};
MutationRequest RequestOf(const PeerMutation& mutation);

// What a Set, Remove or Invalidate response message from `address` means:
// the nodes that did not acknowledge; the peer's in-band error (bad input)
// as InvalidArgument; an undecodable message as Internal.
absl::StatusOr<MutationResult> ResultOfMutationResponse(std::string_view address,
                                                         std::string_view message);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_PEER_RESPONSE_H_
