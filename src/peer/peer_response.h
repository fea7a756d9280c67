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

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "lcache/peers.h"

namespace lcache::internal {

// What a Get response message from `address` means. The
// value, with the owner's time to live when it sent one; in-band "key not
// found" as NotFound, "empty key" as InvalidArgument, another err text as
// Unknown; an undecodable message as Internal.
absl::StatusOr<PeerValue> ValueOfGetResponse(std::string_view address, std::string_view message);

// Whether to peek at a peer, learned from its answers: once it answered
// UNIMPLEMENTED (a Go node) it is not sent another; after it could not be
// reached (a node that left and is gone, a dead one not yet dropped), none
// for kPeekPause, so that its keys load at once instead of each waiting
// for its peek to fail. Peeks are sent before the first answer arrives, so a
// burst of misses right after a ring change is not made to load while a
// probe is in flight; a Go node may get the few sent in that first round
// trip. Thread-safe.
class PeekSupport {
 public:
  static constexpr absl::Duration kPeekPause = absl::Seconds(5);

  bool MaySend() const {
    return !refused_.load(std::memory_order_relaxed) &&
           absl::GetCurrentTimeNanos() >= paused_until_ns_.load(std::memory_order_relaxed);
  }
  // What a peek sent after MaySend() got.
  void Learn(const absl::Status& status) {
    if (absl::IsUnimplemented(status)) refused_.store(true, std::memory_order_relaxed);
    if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) {
      paused_until_ns_.store(absl::GetCurrentTimeNanos() + absl::ToInt64Nanoseconds(kPeekPause),
                             std::memory_order_relaxed);
    }
  }

 private:
  std::atomic<bool> refused_{false};
  std::atomic<int64_t> paused_until_ns_{0};
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
