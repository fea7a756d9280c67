#include "lcache/ring_picker.h"

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace lcache {

namespace {

// Lets the getter map be searched with the string_view HashRing::Owner
// returns, without making a std::string.
struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// The factory's getter, watched: every result feeds the peer's PeerHealth.
class MonitoredPeer final : public PeerGetter {
 public:
  MonitoredPeer(std::shared_ptr<PeerGetter> peer, const std::string& address,
                const EjectionOptions& options, std::shared_ptr<EjectionCounters> counters)
      : health_(address, options, std::move(counters)),
        slow_links_(options.slow_links),
        peer_(std::move(peer)) {}

  absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) override {
    const uint64_t epoch = health_.epoch();
    absl::StatusOr<PeerValue> v = peer_->Get(group, key);
    health_.Record(Judged(v.status()), epoch);
    return v;
  }

  bool StartGet(std::string_view group, std::string_view key, absl::Time deadline,
                Done done, Cancel* cancel) override {
    const uint64_t epoch = health_.epoch();
    // The health outlives the call: the Group holds this peer until it ends.
    return peer_->StartGet(
        group, key, deadline,
        [this, epoch, done = std::move(done)](absl::StatusOr<PeerValue> v) {
          health_.Record(Judged(v.status()), epoch);
          done(std::move(v));
        },
        cancel);
  }

  // What a call's result says of the peer's health: an answer over a slow
  // link is a failure (the caller still gets the answer).
  absl::Status Judged(const absl::Status& status) const {
    if (!slow_links_ || IsPeerFailure(status) || IsCallerDeadline(status) ||
        absl::IsCancelled(status)) {
      return status;
    }
    absl::Status slow = peer_->Slowness();
    return slow.ok() ? status : slow;
  }

  absl::Status Slowness() const override { return peer_->Slowness(); }

  // Not watched: a mutation is sent whatever the peer's health, and its
  // failures are the mutation's to report. A peek is sent only to a peer
  // that is in service or has left the ring (PreviousOwner), and its failure
  // costs a getter call, not a fallback: not watched either.
  void StartMutate(const PeerMutation& mutation, absl::Time deadline, MutateDone done) override {
    peer_->StartMutate(mutation, deadline, std::move(done));
  }
  void StartPeek(std::string_view group, std::string_view key, absl::Time deadline,
                 Done done) override {
    peer_->StartPeek(group, key, deadline, std::move(done));
  }

  PeerHealth& health() { return health_; }
  PeerGetter& peer() { return *peer_; }

 private:
  // The peer is released first: a call of its still ending (on its own
  // thread) may report to the health it watches.
  PeerHealth health_;
  const bool slow_links_;
  const std::shared_ptr<PeerGetter> peer_;
};

// The one request allowed to an ejected peer: its result decides whether the
// peer returns. Made per probe (rare), so the healthy path stays
// allocation-free.
class ProbeCall final : public PeerGetter {
 public:
  explicit ProbeCall(std::shared_ptr<MonitoredPeer> peer) : peer_(std::move(peer)) {}

  absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) override {
    absl::StatusOr<PeerValue> v = peer_->peer().Get(group, key);
    peer_->health().RecordProbe(peer_->Judged(v.status()));
    return v;
  }

  bool StartGet(std::string_view group, std::string_view key, absl::Time deadline,
                Done done, Cancel* cancel) override {
    return peer_->peer().StartGet(
        group, key, deadline,
        [peer = peer_, done = std::move(done)](absl::StatusOr<PeerValue> v) {
          peer->health().RecordProbe(peer->Judged(v.status()));
          done(std::move(v));
        },
        cancel);
  }

 private:
  const std::shared_ptr<MonitoredPeer> peer_;
};

struct PeerEntry {
  std::shared_ptr<PeerGetter> getter;  // what PickPeer returns for a healthy peer
  // The same object as `getter` when ejection is on; null when it is off.
  std::shared_ptr<MonitoredPeer> monitored;
};

using GetterMap =
    std::unordered_map<std::string, PeerEntry, TransparentStringHash, std::equal_to<>>;

}  // namespace

// A ring this node had before, when it was replaced, and until when
// PreviousOwner consults it; with the getters of the peers that left the
// ring then: a node that leaves hands its keys off and still serves for a
// while (its drain), so its copies can be peeked at until it is gone.
struct FormerRing {
  std::shared_ptr<const HashRing> ring;
  absl::Time replaced_at;
  absl::Time until;
  std::shared_ptr<const GetterMap> departed = nullptr;
};

struct RingPicker::Snapshot {
  HashRing ring;
  GetterMap getters;  // every address on the ring except self
  HashRing heirs;     // `ring` without self
  std::vector<FormerRing> history = {};  // newest first, at most kRingHistory
  // The ring before the last change (null before the first): what
  // NewReplicaHolders compares with.
  std::shared_ptr<const HashRing> previous = nullptr;
};

namespace {

HashRing WithoutSelf(const HashRing& ring, std::string_view self, RingKind kind, int replicas) {
  std::vector<std::string> others;
  for (const std::string& address : ring.addresses()) {
    if (address != self) others.push_back(address);
  }
  return HashRing(kind, std::move(others), replicas);
}

}  // namespace

RingPicker::RingPicker(std::string self, PeerFactory factory, int replicas)
    : RingPicker(std::move(self), std::move(factory),
                 RingPickerOptions{.kind = RingKind::kGroupcache, .replicas = replicas}) {
  assert(replicas > 0);
}

RingPicker::RingPicker(std::string self, PeerFactory factory, RingPickerOptions options)
    : self_(std::move(self)),
      factory_(std::move(factory)),
      kind_(options.kind),
      replicas_(options.replicas),
      ejection_(std::move(options.ejection)),
      ejection_counters_(std::make_shared<EjectionCounters>()),
      warmup_(options.warmup),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      replication_(options.replication),
      snapshot_(std::make_shared<const Snapshot>(
          Snapshot{HashRing(kind_, {}, replicas_), {}, HashRing(kind_, {}, replicas_)})) {
  assert(factory_ != nullptr);
  assert(replicas_ >= 0);
  assert(replication_ >= 1);
}

RingPicker::~RingPicker() = default;

std::shared_ptr<const RingPicker::Snapshot> RingPicker::Load() const {
  std::lock_guard lock(snapshot_mu_);
  return snapshot_;
}

RingPicker::Change RingPicker::SetPeers(std::vector<std::string> addresses) {
  // Declared before the writer lock so that the old snapshot, and with it the
  // getters of removed peers, is released after the lock.
  std::shared_ptr<const Snapshot> old;
  std::lock_guard writer_lock(writer_mu_);
  old = Load();

  Change change;
  std::vector<std::string> kept;  // ring order
  GetterMap getters;
  std::unordered_set<std::string_view> seen;  // views into `addresses`, never moved from
  for (const std::string& address : addresses) {
    if (!seen.insert(address).second) continue;
    if (address != self_) {
      PeerEntry entry;
      if (auto it = old->getters.find(address); it != old->getters.end()) {
        entry = it->second;
      } else {
        try {
          entry.getter = factory_(address);
        } catch (...) {
          // Treated as a null result: the address stays off the ring.
        }
        if (entry.getter == nullptr) {
          change.rejected.push_back(address);
          continue;
        }
        if (ejection_.after_failures > 0) {
          entry.monitored = std::make_shared<MonitoredPeer>(std::move(entry.getter), address,
                                                            ejection_, ejection_counters_);
          entry.getter = entry.monitored;
        }
      }
      getters.emplace(address, std::move(entry));
    }
    kept.push_back(address);
  }

  HashRing ring(kind_, std::move(kept), replicas_);
  HashRing heirs = WithoutSelf(ring, self_, kind_, replicas_);
  auto next = std::make_shared<Snapshot>(
      Snapshot{std::move(ring), std::move(getters), std::move(heirs), {}});
  const std::vector<std::string>& before = old->ring.addresses();
  const std::vector<std::string>& after = next->ring.addresses();
  next->previous = old->previous;
  if (before != after && replication_ > 1) {
    next->previous = std::make_shared<const HashRing>(old->ring);
  }
  if (warmup_ > absl::ZeroDuration()) {
    const absl::Time now = clock_->Now();
    // Before this node's first ring the others had the ring without it.
    if (before.empty()) {
      if (next->heirs.addresses().size() != after.size() && !next->heirs.addresses().empty()) {
        next->history.push_back(
            {std::make_shared<const HashRing>(next->heirs), now, now + warmup_});
      }
    } else if (before != after) {
      auto departed = std::make_shared<GetterMap>();
      for (const auto& [address, entry] : old->getters) {
        if (!next->getters.contains(address)) departed->emplace(address, entry);
      }
      next->history.push_back(
          {std::make_shared<const HashRing>(old->ring), now, now + warmup_, std::move(departed)});
    }
    for (const FormerRing& former : old->history) {
      if (next->history.size() >= kRingHistory) break;
      if (former.until > now) next->history.push_back(former);
    }
  }
  const std::unordered_set<std::string_view> was(before.begin(), before.end());
  const std::unordered_set<std::string_view> now(after.begin(), after.end());
  for (const std::string& address : after) {
    if (!was.contains(address)) change.added.push_back(address);
  }
  for (const std::string& address : before) {
    if (!now.contains(address)) change.removed.push_back(address);
  }

  {
    std::lock_guard lock(snapshot_mu_);
    snapshot_ = std::move(next);  // `old` still holds the previous one
  }
  return change;
}

std::shared_ptr<PeerGetter> RingPicker::PickPeer(std::string_view key) {
  const std::shared_ptr<const Snapshot> snapshot = Load();
  const std::string_view owner = snapshot->ring.Owner(key);
  // Self has no getter, and an empty ring no owner: both are local.
  if (owner == self_) return nullptr;
  auto it = snapshot->getters.find(owner);
  if (it == snapshot->getters.end()) return nullptr;
  const PeerEntry& entry = it->second;
  if (entry.monitored == nullptr) return entry.getter;
  switch (entry.monitored->health().Admit()) {
    case PeerHealth::Admission::kUse:
      return entry.getter;
    case PeerHealth::Admission::kProbe:
      return std::make_shared<ProbeCall>(entry.monitored);
    case PeerHealth::Admission::kSkip:
      break;
  }
  if (replication_ > 1) return StandInOf(*snapshot, key).getter;
  return nullptr;
}

std::vector<PeerPicker::Peer> RingPicker::ReplicaHolders(std::string_view key) {
  if (replication_ <= 1) return {};
  return HoldersOf(*Load(), key);
}

std::vector<PeerPicker::Peer> RingPicker::NewReplicaHolders(std::string_view key) {
  if (replication_ <= 1) return {};
  const std::shared_ptr<const Snapshot> snapshot = Load();
  std::vector<Peer> holders = HoldersOf(*snapshot, key);
  if (holders.empty() || snapshot->previous == nullptr) return holders;
  const std::vector<std::string_view> before =
      snapshot->previous->Successors(key, replication_);
  // Not the owner then: whatever the owner of then pushed, this node did not.
  if (before.empty() || before[0] != self_) return holders;
  std::erase_if(holders, [&](const Peer& p) {
    return std::find(before.begin() + 1, before.end(), p.address) != before.end();
  });
  return holders;
}

std::vector<PeerPicker::Peer> RingPicker::HoldersOf(const Snapshot& snapshot,
                                                     std::string_view key) const {
  std::vector<Peer> holders;
  const std::vector<std::string_view> nodes = snapshot.ring.Successors(key, replication_);
  if (nodes.empty() || nodes[0] != self_) return holders;
  for (size_t i = 1; i < nodes.size(); ++i) {
    auto it = snapshot.getters.find(nodes[i]);
    if (it == snapshot.getters.end()) continue;
    const PeerEntry& entry = it->second;
    holders.push_back({std::string(nodes[i]), entry.getter,
                       entry.monitored != nullptr && entry.monitored->health().out()});
  }
  return holders;
}

PeerPicker::Peer RingPicker::StandInOf(const Snapshot& snapshot, std::string_view key) const {
  const std::vector<std::string_view> nodes = snapshot.ring.Successors(key, replication_);
  if (nodes.empty() || nodes[0] == self_) return {};
  for (size_t i = 1; i < nodes.size(); ++i) {
    if (nodes[i] == self_) return {self_, nullptr};
    auto it = snapshot.getters.find(nodes[i]);
    if (it == snapshot.getters.end()) continue;
    const PeerEntry& entry = it->second;
    if (entry.monitored != nullptr && entry.monitored->health().out()) continue;
    return {std::string(nodes[i]), entry.getter};
  }
  return {};
}

PeerPicker::Peer RingPicker::StandIn(std::string_view key) {
  if (replication_ <= 1) return {};
  return StandInOf(*Load(), key);
}

PeerPicker::Peer RingPicker::OwnerOf(std::string_view key) {
  const std::shared_ptr<const Snapshot> snapshot = Load();
  const std::string_view owner = snapshot->ring.Owner(key);
  if (owner == self_) return {std::string(owner), nullptr};
  auto it = snapshot->getters.find(owner);
  if (it == snapshot->getters.end()) return {"", nullptr};  // empty ring
  return {std::string(owner), it->second.getter};
}

std::vector<PeerPicker::Peer> RingPicker::OtherPeers() {
  const std::shared_ptr<const Snapshot> snapshot = Load();
  std::vector<Peer> peers;
  for (const std::string& address : snapshot->ring.addresses()) {
    auto it = snapshot->getters.find(address);
    if (it == snapshot->getters.end()) continue;
    const PeerEntry& entry = it->second;
    peers.push_back({address, entry.getter,
                     entry.monitored != nullptr && entry.monitored->health().out()});
  }
  return peers;
}

PeerPicker::Previous RingPicker::PreviousOwner(std::string_view key) {
  const std::shared_ptr<const Snapshot> snapshot = Load();
  if (snapshot->history.empty() || snapshot->ring.Owner(key) != self_) return {};
  const absl::Time now = clock_->Now();
  for (const FormerRing& former : snapshot->history) {
    if (former.until <= now) continue;
    const std::string_view owner = former.ring->Owner(key);
    if (owner.empty() || owner == self_) continue;  // ours then too: look further back
    if (auto it = snapshot->getters.find(owner); it != snapshot->getters.end()) {
      const PeerEntry& entry = it->second;
      if (entry.monitored != nullptr && entry.monitored->health().out()) return {};
      // Since the change after which it was no longer the owner.
      return {entry.getter, former.replaced_at};
    }
    // Left the ring: it may still be draining (a peek at a node that is gone
    // fails at once, and its keys load).
    if (former.departed != nullptr) {
      if (auto it = former.departed->find(owner); it != former.departed->end()) {
        return {it->second.getter, former.replaced_at};
      }
    }
    // Gone, and its copies with it: look further back.
  }
  return {};
}

PeerPicker::Peer RingPicker::HeirOf(std::string_view key) {
  const std::shared_ptr<const Snapshot> snapshot = Load();
  const std::string_view heir = snapshot->heirs.Owner(key);
  auto it = snapshot->getters.find(heir);
  if (it == snapshot->getters.end()) return {};
  const PeerEntry& entry = it->second;
  return {std::string(heir), entry.getter,
          entry.monitored != nullptr && entry.monitored->health().out()};
}

std::vector<std::string> RingPicker::Peers() const { return Load()->ring.addresses(); }

EjectionStats RingPicker::ejection_stats() const {
  EjectionStats stats = ejection_counters_->Read();
  const std::shared_ptr<const Snapshot> snapshot = Load();
  for (const auto& [address, entry] : snapshot->getters) {
    if (entry.monitored != nullptr && entry.monitored->health().out()) ++stats.out_now;
  }
  return stats;
}

std::vector<std::string> RingPicker::EjectedPeers() const {
  std::vector<std::string> out;
  const std::shared_ptr<const Snapshot> snapshot = Load();
  for (const std::string& address : snapshot->ring.addresses()) {
    auto it = snapshot->getters.find(address);
    if (it != snapshot->getters.end() && it->second.monitored != nullptr &&
        it->second.monitored->health().out()) {
      out.push_back(address);
    }
  }
  return out;
}

}  // namespace lcache
