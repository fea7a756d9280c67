#include "lcache/hash_ring.h"

#include <zlib.h>

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace lcache {

uint32_t HashRing::Crc32(std::string_view data) {
  // crc32_z takes a size_t length, so inputs over 4 GiB are not truncated.
  return static_cast<uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(data.data()), data.size()));
}

HashRing::HashRing(std::vector<std::string> addresses, int replicas, HashFn hash)
    : replicas_(replicas), hash_(hash ? std::move(hash) : HashFn(&HashRing::Crc32)) {
  assert(replicas > 0);

  // Two passes: the views in `seen` point into `addresses` and would dangle
  // once its strings are moved out.
  std::vector<size_t> first_seen;
  {
    std::unordered_set<std::string_view> seen;
    for (size_t i = 0; i < addresses.size(); ++i) {
      if (seen.insert(addresses[i]).second) first_seen.push_back(i);
    }
  }
  addresses_.reserve(first_seen.size());
  for (size_t i : first_seen) addresses_.push_back(std::move(addresses[i]));

  // Without asserts, a count <= 0 leaves the ring empty, as Go's would be.
  if (replicas <= 0) return;
  points_.reserve(addresses_.size() * static_cast<size_t>(replicas));
  std::string point_key;
  for (size_t a = 0; a < addresses_.size(); ++a) {
    for (int i = 0; i < replicas; ++i) {
      point_key = std::to_string(i);
      point_key += addresses_[a];
      points_.push_back({hash_(point_key), static_cast<uint32_t>(a)});
    }
  }

  // Address indices follow insertion order, so ordering equal hashes by
  // index and keeping the last of each run (unique over reverse iterators)
  // makes the later-added address win a collision, as the Go program's map
  // overwrite does.
  std::sort(points_.begin(), points_.end(), [](const Point& x, const Point& y) {
    return x.hash != y.hash ? x.hash < y.hash : x.address_index < y.address_index;
  });
  auto last = std::unique(points_.rbegin(), points_.rend(),
                          [](const Point& x, const Point& y) { return x.hash == y.hash; });
  points_.erase(points_.begin(), last.base());
}

std::string_view HashRing::Owner(std::string_view key) const {
  if (points_.empty()) return {};
  const uint32_t h = hash_(key);
  auto it = std::lower_bound(points_.begin(), points_.end(), h,
                             [](const Point& p, uint32_t value) { return p.hash < value; });
  if (it == points_.end()) it = points_.begin();
  return addresses_[it->address_index];
}

}  // namespace lcache
