// RingPicker: the PeerPicker that routes keys over a HashRing of peer
// addresses, holding one PeerGetter (a client) per peer.
//
//   lcache::RingPicker picker(flags.addr, [](const std::string& address) {
//     return NewGrpcPeerGetter(address);  // or an H2PeerClient's NewGetter
//   });
//   lcache::RingPicker::Change change = picker.SetPeers(addresses_from_etcd);
//   group_options.peers = &picker;
//
// Ownership of keys is the HashRing's: by default the groupcache kind
// (CRC-32, 50 replicas, later-added address wins a tie; see hash_ring.h), so
// it agrees key by key with the Go lru_cache and with every node given the
// same addresses in the same order; RingPickerOptions::kind picks the
// balanced kind for clusters of C++ nodes only.
//
// Outlier ejection (off by default; RingPickerOptions::ejection, see
// outlier_ejection.h): the picker wraps each peer's getter to watch its
// results, and PickPeer returns null (load locally) for the keys of a peer
// that is ejected, except for the one probe request that may bring it back.
// Counters: ejection_stats(). A peer kept across SetPeers keeps its health.
//
// Warm-up (RingPickerOptions::warmup, off by default): for that long after a
// ring change, PreviousOwner names, for a key this node took over, the
// peer that owned it on an earlier ring (up to kRingHistory rings back; on
// this node's first ring, the ring without itself, which is what the others
// had before it joined): a live one, or one that left at that change (its
// getter is kept for the window: it may still be draining), so the Group can
// peek at that peer's copy before it calls the getter. HeirOf names the owner on the ring without this node:
// where a departing node hands its keys off.
//
// Replication (RingPickerOptions::replication = R > 1): a key's replicas
// live on the R - 1 distinct nodes that follow its owner on the ring
// (HashRing::Successors), so the first of them is the key's heir: when the
// owner leaves the ring, the node that takes the key over already holds it.
// ReplicaHolders names them to the owner; while the owner is ejected,
// PickPeer returns the first holder in service instead of null (null if that
// is this node: it answers from its own replica), and StandIn names that
// holder to a Group whose call to the owner failed.
//
// Self: pass the full peer list of the cluster, this node included under the
// exact address it was started with (its -addr), as the Go program does.
// PickPeer never returns a getter for `self`, and the factory is never called
// for it. If `self` is NOT in the list it is NOT added: the ring is exactly
// the list, so this node owns no key and sends every miss to the owner the
// other nodes agree on. Adding it would make this node claim keys that every
// other node routes elsewhere (two owners, two copies, two loads); that
// happens in practice while a node's own registration has not reached etcd
// yet, or after its lease expired and the others dropped it. Not owning keys
// is harmless: the Group still loads locally when the owner fails.
//
// Addresses the factory rejects (returns null or throws) are left out of the
// ring and reported in Change::rejected; they are tried again by the next
// SetPeers that lists them. Note that the other nodes keep such an address on
// their rings, so for the keys it would own this node picks the next peer.
//
// Thread-safety: all methods are safe for concurrent use. PickPeer reads an
// immutable snapshot {ring, getters}: it never waits for the factory or for a
// ring to be built, only for a pointer copy, and it sees either the old or the
// new peer set, never a mix. Concurrent SetPeers calls run one at a time, each
// against the result of the previous one, so no update is lost.
//
// Ownership: the picker shares ownership of the getters with the callers of
// PickPeer. A peer kept across SetPeers keeps its getter (no reconnect); a
// removed peer's getter is destroyed when the last holder lets go (the
// picker, or a call still in flight with it), on that holder's thread.

#ifndef LCACHE_RING_PICKER_H_
#define LCACHE_RING_PICKER_H_

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "lcache/clock.h"
#include "lcache/hash_ring.h"
#include "lcache/outlier_ejection.h"
#include "lcache/peers.h"

namespace lcache {

// Makes the client for a peer address; null if it cannot (e.g. the address is
// invalid). Called only from SetPeers, one address at a time; it must not
// call SetPeers on the same picker.
using PeerFactory = std::function<std::shared_ptr<PeerGetter>(const std::string& address)>;

struct RingPickerOptions {
  RingKind kind = RingKind::kGroupcache;
  // Points per address; 0 means the kind's default (50 or 2000).
  int replicas = 0;
  // after_failures == 0 (the default) turns ejection off: PickPeer returns
  // the factory's getters themselves.
  EjectionOptions ejection = {};
  // How long after a ring change PreviousOwner answers; zero: never.
  absl::Duration warmup = absl::ZeroDuration();
  // Times the warm-up window. Null: Clock::Real(). Must outlive the picker.
  const Clock* clock = nullptr;
  // Nodes that hold each key: its owner and replication - 1 replica holders,
  // the owner's distinct successors on the ring (ReplicaHolders, StandIn).
  // 1: no replicas. REQUIRES: >= 1.
  int replication = 1;
};

class RingPicker final : public PeerPicker {
 public:
  // What a SetPeers call changed, for the caller to log.
  struct Change {
    std::vector<std::string> added;     // on the ring now, not before (in the order given)
    std::vector<std::string> removed;   // on the ring before, not now (in the old order)
    std::vector<std::string> rejected;  // refused by the factory, so not on the ring
  };

  // `self`: this node's address exactly as it appears on the ring (its
  // -addr). `factory` makes a client for a peer address. Starts with no peers,
  // so every key is local until the first SetPeers.
  // REQUIRES: factory is not null; replicas > 0.
  RingPicker(std::string self, PeerFactory factory, int replicas = HashRing::kDefaultReplicas);
  // REQUIRES: factory is not null; options.replicas >= 0; see EjectionOptions.
  RingPicker(std::string self, PeerFactory factory, RingPickerOptions options);
  ~RingPicker() override;

  RingPicker(const RingPicker&) = delete;
  RingPicker& operator=(const RingPicker&) = delete;

  // Replaces the whole peer set at once. The ring holds the distinct
  // addresses in the order given (duplicates after the first are ignored),
  // minus those the factory rejects; an empty list means no peers, so every
  // key is local. Peers already on the ring keep their getters; the factory
  // is called only for new ones, outside any lock PickPeer takes.
  Change SetPeers(std::vector<std::string> addresses);

  // The getter of the peer that owns `key`; null when this node owns it or
  // there are no peers. When the owner is ejected: its stand-in's getter
  // with replication (null when that is this node), else null. Allocates
  // nothing on the healthy path; the probe of an ejected peer and the
  // lookup of a stand-in do.
  std::shared_ptr<PeerGetter> PickPeer(std::string_view key) override;

  // The owner on the ring whatever its health; see PeerPicker::OwnerOf.
  Peer OwnerOf(std::string_view key) override;
  // Every peer on the ring but self, in ring order, ejected ones included.
  std::vector<Peer> OtherPeers() override;
  // See "Warm-up" above: null unless `key` is self's now and, on the newest
  // ring of the window where another node owned it, that node is still on
  // the ring and not ejected.
  Previous PreviousOwner(std::string_view key) override;
  Peer HeirOf(std::string_view key) override;
  // See "Replication" above.
  std::vector<Peer> ReplicaHolders(std::string_view key) override;
  std::vector<Peer> NewReplicaHolders(std::string_view key) override;
  Peer StandIn(std::string_view key) override;

  // Rings kept for PreviousOwner, at most.
  static constexpr size_t kRingHistory = 4;

  // Ejection counters since construction, and the peers out right now.
  EjectionStats ejection_stats() const;
  // The addresses of the peers out of service right now.
  std::vector<std::string> EjectedPeers() const;

  // The addresses on the ring (self included if it was listed), in ring order.
  std::vector<std::string> Peers() const;

  std::string_view self() const { return self_; }

 private:
  struct Snapshot;  // immutable once published

  std::shared_ptr<const Snapshot> Load() const;
  // The first of `key`'s replica holders in service; see StandIn.
  Peer StandInOf(const Snapshot& snapshot, std::string_view key) const;
  // `key`'s holders on `snapshot`'s ring if self owns it there, each with
  // its getter; empty otherwise.
  std::vector<Peer> HoldersOf(const Snapshot& snapshot, std::string_view key) const;

  const std::string self_;
  const PeerFactory factory_;
  const RingKind kind_;
  const int replicas_;
  const EjectionOptions ejection_;
  const std::shared_ptr<EjectionCounters> ejection_counters_;
  const absl::Duration warmup_;
  const Clock* const clock_;
  const int replication_;

  // Serialises SetPeers calls; PickPeer and Peers never take it.
  std::mutex writer_mu_;
  // Guards only the copy and the swap of `snapshot_` (never held while a ring
  // is built, the factory runs or a getter is destroyed). Not
  // std::atomic<std::shared_ptr>: libstdc++ 12's one trips ThreadSanitizer.
  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const Snapshot> snapshot_;  // GUARDED_BY(snapshot_mu_), never null
};

}  // namespace lcache

#endif  // LCACHE_RING_PICKER_H_
