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
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// A change of one key sent to a peer (docs/PROTOCOL.md, section 6): a
// client's Set or Remove forwarded to the key's owner, or the owner's
// Invalidate, which tells every other node to drop its copies; or a
// departing node's Handoff of a value to the key's next owner (section 8),
// which keeps it only if it holds none and nothing changed the key lately.
//
// Replication (section 9): the owner's Replicate of a value it loaded, which
// a replica holder keeps only if nothing changed the key lately; and its
// SetReplica, sent instead of Invalidate to the replica holders of a key it
// was Set, which drops the holder's copies and keeps the new value as one
// step.
struct PeerMutation {
  enum class Kind { kSet, kRemove, kInvalidate, kHandoff, kReplicate, kSetReplica };

  Kind kind = Kind::kInvalidate;
  std::string_view group;
  std::string_view key;
  std::string_view value = {};                      // kSet, kHandoff, kReplicate, kSetReplica
  std::optional<absl::Duration> ttl = std::nullopt;  // with a value; nullopt: the group's
                                                     // default for kSet, none for the others
};

// What a Set or Remove achieved: the peers (addresses) that did not confirm,
// in time, that they dropped their copies of the key. Empty when every peer
// did, or for an Invalidate.
struct MutationResult {
  std::vector<std::string> unacknowledged;
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

  // OK, or UNAVAILABLE saying why when the transport judges the link to the
  // peer slow: its round trips far above their usual (the lean transport
  // PINGs its peers for that, src/peer/h2/round_trips.h). Outlier ejection
  // (outlier_ejection.h) counts a call answered over a slow link as a
  // failure. Cheap; any thread. The default: never slow.
  virtual absl::Status Slowness() const { return absl::OkStatus(); }

  using MutateDone = std::function<void(absl::StatusOr<MutationResult>)>;
  // Sends `mutation` to the peer, answered by `done` exactly once, on
  // whatever thread completes the call; `done` must not block. The call ends
  // by `deadline` or the getter's own timeout, whichever comes first. The
  // peer's in-band error (bad input) comes back as InvalidArgument; a peer
  // that does not know the method (a Go node) as UNIMPLEMENTED. The default
  // answers UNIMPLEMENTED at once.
  virtual void StartMutate(const PeerMutation& mutation, absl::Time deadline, MutateDone done);

  // Asks the peer for its stored copy of `key` only: it never loads, and
  // answers NotFound when it holds none (docs/PROTOCOL.md, section 8). A
  // node that took over a key after a ring change asks the key's previous
  // owner so before it calls the getter. `done` as for StartGet; a peer that
  // does not know the method (a Go node) answers UNIMPLEMENTED, and the
  // transports then answer every later StartPeek UNIMPLEMENTED at once. The
  // default answers UNIMPLEMENTED at once.
  virtual void StartPeek(std::string_view group, std::string_view key, absl::Time deadline,
                         Done done);

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

  struct Peer {
    std::string address;
    std::shared_ptr<PeerGetter> getter;  // null: this node
    // Out of service (ejected by outlier detection): an owner sends it the
    // invalidation but does not wait for its answer; a hand-off skips it.
    bool out = false;
  };

  // Where a Set or Remove of `key` goes: its owner on the ring, healthy or
  // not (a mutation must reach the node whose copy is authoritative, never a
  // stand-in), with a null getter when this node owns it. The default is
  // PickPeer's answer, unnamed.
  virtual Peer OwnerOf(std::string_view key) { return {"", PickPeer(key)}; }

  // Every other node, to which the owner of a mutated key sends Invalidate.
  virtual std::vector<Peer> OtherPeers() { return {}; }

  // For a key this node owns since a recent ring change (within the
  // picker's warm-up window): the live, healthy peer that owned it before
  // and may still hold it, to peek at before calling the getter.
  struct Previous {
    std::shared_ptr<PeerGetter> getter;  // null: there is none
    // When the ring on which it owned the key was replaced, on the picker's
    // clock (the Group compares it with its own: keep them the same clock).
    // A Set, Remove or Invalidate of the key this node applied since then
    // makes the previous owner's copy suspect (it may have missed that
    // invalidation), so the Group does not peek.
    absl::Time since = absl::InfinitePast();
  };
  virtual Previous PreviousOwner(std::string_view key) {
    (void)key;
    return {};
  }

  // The node that would own `key` if this node left the ring: where a
  // departing node hands the key off. Null getter when there is none (this
  // node is alone, or not on the ring). The default: none.
  virtual Peer HeirOf(std::string_view key) {
    (void)key;
    return {};
  }

  // Replication (RingPickerOptions::replication > 1): for a key this node
  // owns, the other nodes that keep replicas of it (the owner's distinct
  // successors on the ring), to which it pushes the values it loads or is
  // Set. Empty when this node does not own `key` or nothing is replicated.
  // The default: none.
  virtual std::vector<Peer> ReplicaHolders(std::string_view key) {
    (void)key;
    return {};
  }

  // For a key this node owns, the replica holders it has now that it did
  // not have before the last ring change (all of them if it did not own the
  // key then): the ones a re-replication after that change pushes the key
  // to. The default: none.
  virtual std::vector<Peer> NewReplicaHolders(std::string_view key) {
    (void)key;
    return {};
  }

  // For a key another node owns, the replica holder that answers for the
  // owner when the owner fails: the first holder in service. A null getter
  // with a non-empty address: this node is that holder. Empty address:
  // there is none (nothing is replicated, or this node owns the key). The
  // default: none.
  virtual Peer StandIn(std::string_view key) {
    (void)key;
    return {};
  }
};

}  // namespace lcache

#endif  // LCACHE_PEERS_H_
