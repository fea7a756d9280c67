#include "lcache/ring_picker.h"

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

using GetterMap = std::unordered_map<std::string, std::shared_ptr<PeerGetter>,
                                     TransparentStringHash, std::equal_to<>>;

}  // namespace

struct RingPicker::Snapshot {
  HashRing ring;
  GetterMap getters;  // every address on the ring except self
};

RingPicker::RingPicker(std::string self, PeerFactory factory, int replicas)
    : self_(std::move(self)),
      factory_(std::move(factory)),
      replicas_(replicas),
      snapshot_(std::make_shared<const Snapshot>(Snapshot{HashRing({}, replicas), {}})) {
  assert(factory_ != nullptr);
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
      std::shared_ptr<PeerGetter> getter;
      if (auto it = old->getters.find(address); it != old->getters.end()) {
        getter = it->second;
      } else {
        try {
          getter = factory_(address);
        } catch (...) {
          // Treated as a null result: the address stays off the ring.
        }
        if (getter == nullptr) {
          change.rejected.push_back(address);
          continue;
        }
      }
      getters.emplace(address, std::move(getter));
    }
    kept.push_back(address);
  }

  auto next = std::make_shared<const Snapshot>(
      Snapshot{HashRing(std::move(kept), replicas_), std::move(getters)});
  const std::vector<std::string>& before = old->ring.addresses();
  const std::vector<std::string>& after = next->ring.addresses();
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
  return it == snapshot->getters.end() ? nullptr : it->second;
}

std::vector<std::string> RingPicker::Peers() const { return Load()->ring.addresses(); }

}  // namespace lcache
