// Peers: the seam between a Group and the rest of the cluster.
//
// A PeerPicker tells a Group which peer owns a key; a PeerGetter fetches a
// value from that peer. RingPicker (ring_picker.h) is the picker; each
// transport's client is a PeerGetter (h2_peer.h, grpc_peer.h); tests can
// plug in in-process fakes. Both must be safe for concurrent use.

#ifndef LCACHE_PEERS_H_
#define LCACHE_PEERS_H_

#include <functional>
#include <memory>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/byte_view.h"

namespace lcache {

// What an owner peer answered: the value and how long the owner's copy
// lives, counted from no earlier than when the call was made. A copy kept
// until (call start + ttl) therefore never outlives the owner's, whatever the
// two nodes' clocks say. Peers that do not send an expiry (Go nodes, entries
// without one) give absl::InfiniteDuration().
struct PeerValue {
  PeerValue(ByteView v) : value(std::move(v)) {}  // NOLINT: implicit on purpose
  PeerValue(ByteView v, absl::Duration time_to_live) : value(std::move(v)), ttl(time_to_live) {}

  ByteView value;
  absl::Duration ttl = absl::InfiniteDuration();
};

class PeerGetter {
 public:
  virtual ~PeerGetter() = default;

  // Fetches `key` of `group` from the peer. The wire carries application
  // errors as text (docs/PROTOCOL.md, 2.7): the owner's "key not found" comes
  // back as NotFound, "empty key" as InvalidArgument, any other getter error
  // as Unknown with the owner's message; transport failures as UNAVAILABLE,
  // DEADLINE_EXCEEDED and the like.
  virtual absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) = 0;

  using Done = std::function<void(absl::StatusOr<PeerValue>)>;
  // Calls off a call StartGet started: the call is reset on the wire, and
  // `done` runs with CANCELLED if it has not run yet. Any thread, any time;
  // a no-op once `done` has run.
  using Cancel = std::function<void()>;

  // The asynchronous Get, answered by `done` exactly once, on whatever
  // thread completes the call (a transport's I/O thread, or the caller's
  // when it fails at once); `done` must not block. The call ends by
  // `deadline` (the caller's, already less the time a fallback needs) or the
  // getter's own timeout, whichever comes first; when the caller's deadline
  // cut the call short, a DEADLINE_EXCEEDED carries CallerDeadlinePayload.
  // With `cancel` not null, *cancel is set to a Cancel for this call (before
  // StartGet returns; `done` may have run already).
  // Returns false, without calling `done`, when this getter has no
  // asynchronous path: the Group then calls Get on a thread that may block.
  // The lean and gRPC transports' getters have one.
  virtual bool StartGet(std::string_view group, std::string_view key, absl::Time deadline,
                        Done done, Cancel* cancel) {
    (void)group, (void)key, (void)deadline, (void)done, (void)cancel;
    return false;
  }

 protected:
  // StartGet with no deadline of the caller's, waited for: the Get of a
  // getter whose calls are asynchronous. REQUIRES: StartGet returns true.
  absl::StatusOr<PeerValue> AwaitStartGet(std::string_view group, std::string_view key);
};

// The payload that marks a peer call's DEADLINE_EXCEEDED as the caller's
// doing: its deadline was less than half the getter's own timeout, so the
// peer had no fair chance to answer and is not counted as failing
// (IsPeerFailure). A call cut short by a longer caller deadline counts: a
// peer that cannot answer in most of its timeout is a failing peer.
inline constexpr char kCallerDeadlinePayload[] = "lcache.caller-deadline";

// DEADLINE_EXCEEDED for a peer call that ended at `deadline` instead of at
// now + `timeout`; marked with kCallerDeadlinePayload when the budget it had,
// `budget`, was under half of `timeout`. For transports.
absl::Status PeerDeadlineExceeded(std::string_view message, absl::Duration budget,
                                  absl::Duration timeout);

class PeerPicker {
 public:
  virtual ~PeerPicker() = default;

  // The peer that owns `key`, or null when this node owns it (or there are
  // no peers). The returned pointer keeps the peer usable for the call even
  // if the peer set changes meanwhile.
  virtual std::shared_ptr<PeerGetter> PickPeer(std::string_view key) = 0;
};

}  // namespace lcache

#endif  // LCACHE_PEERS_H_
