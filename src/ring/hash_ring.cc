#include "lcache/hash_ring.h"

#include <zlib.h>

// Header-only xxHash: every function inlined here, so the library has no
// link-time dependency on libxxhash (nor do the users of an installed lcache).
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace lcache {

std::optional<RingKind> ParseRingKind(std::string_view name) {
  if (name == "groupcache") return RingKind::kGroupcache;
  if (name == "balanced") return RingKind::kBalanced;
  return std::nullopt;
}

const char* RingKindName(RingKind kind) {
  return kind == RingKind::kBalanced ? "balanced" : "groupcache";
}

uint32_t HashRing::Crc32(std::string_view data) {
  // crc32_z takes a size_t length, so inputs over 4 GiB are not truncated.
  return static_cast<uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(data.data()), data.size()));
}

uint64_t HashRing::Xxh3(std::string_view data, uint64_t seed) {
  return XXH3_64bits_withSeed(data.data(), data.size(), seed);
}

HashRing::HashRing(std::vector<std::string> addresses, int replicas, HashFn hash)
    : kind_(RingKind::kGroupcache), replicas_(replicas), hash_(std::move(hash)) {
  assert(replicas > 0);
  Build(std::move(addresses));
}

HashRing::HashRing(RingKind kind, std::vector<std::string> addresses, int replicas)
    : kind_(kind), replicas_(replicas == 0 ? DefaultReplicas(kind) : replicas) {
  assert(replicas >= 0);
  Build(std::move(addresses));
}

uint64_t HashRing::KeyHash(std::string_view key) const {
  if (kind_ == RingKind::kBalanced) return Xxh3(key);
  return hash_ ? hash_(key) : Crc32(key);
}

void HashRing::Build(std::vector<std::string> addresses) {
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
  if (replicas_ <= 0) return;
  struct Point {
    uint64_t hash;
    uint32_t address_index;
  };
  std::vector<Point> points;
  points.reserve(addresses_.size() * static_cast<size_t>(replicas_));
  std::string point_key;
  for (size_t a = 0; a < addresses_.size(); ++a) {
    for (int i = 0; i < replicas_; ++i) {
      uint64_t h;
      if (kind_ == RingKind::kBalanced) {
        h = Xxh3(addresses_[a], static_cast<uint64_t>(i));
      } else {
        point_key = std::to_string(i);
        point_key += addresses_[a];
        h = KeyHash(point_key);
      }
      points.push_back({h, static_cast<uint32_t>(a)});
    }
  }

  // Address indices follow insertion order, so ordering equal hashes by
  // index and keeping the last of each run (unique over reverse iterators)
  // makes the later-added address win a collision, as the Go program's map
  // overwrite does.
  std::sort(points.begin(), points.end(), [](const Point& x, const Point& y) {
    return x.hash != y.hash ? x.hash < y.hash : x.address_index < y.address_index;
  });
  auto last = std::unique(points.rbegin(), points.rend(),
                          [](const Point& x, const Point& y) { return x.hash == y.hash; });
  points.erase(points.begin(), last.base());

  point_hashes_.reserve(points.size());
  point_owners_.reserve(points.size());
  for (const Point& p : points) {
    point_hashes_.push_back(p.hash);
    point_owners_.push_back(p.address_index);
  }
  if (point_hashes_.empty()) return;

  // The bucket index: about one point per bucket (2^bits buckets for
  // 2^bits to 2^(bits+1) points), each bucket the hash range sharing its top
  // `bits` bits. bucket_start_[b] is the first point >= the bucket's lowest
  // hash, so a lookup searches only its bucket instead of the whole ring.
  // At least one bit, so that the shift stays below 64.
  const int bits =
      std::clamp<int>(static_cast<int>(std::bit_width(point_hashes_.size())) - 1, 1, kMaxIndexBits);
  const int hash_bits = kind_ == RingKind::kBalanced ? 64 : 32;
  index_shift_ = hash_bits - bits;
  const size_t buckets = size_t{1} << bits;
  bucket_start_.resize(buckets + 1);
  size_t p = 0;
  for (size_t b = 0; b < buckets; ++b) {
    const uint64_t lowest = static_cast<uint64_t>(b) << index_shift_;
    while (p < point_hashes_.size() && point_hashes_[p] < lowest) ++p;
    bucket_start_[b] = static_cast<uint32_t>(p);
  }
  bucket_start_[buckets] = static_cast<uint32_t>(point_hashes_.size());
}

size_t HashRing::FirstPointAtOrAbove(std::string_view key) const {
  const uint64_t h = KeyHash(key);
  // The first point >= h is in h's bucket, or else it is the first point of
  // the buckets above (bucket_start_[b + 1]); past the end, wrap to 0.
  const size_t b = h >> index_shift_;
  const auto first = point_hashes_.begin() + bucket_start_[b];
  const auto last = point_hashes_.begin() + bucket_start_[b + 1];
  const size_t found = std::lower_bound(first, last, h) - point_hashes_.begin();
  return found == point_hashes_.size() ? 0 : found;
}

std::string_view HashRing::Owner(std::string_view key) const {
  if (point_hashes_.empty()) return {};
  return addresses_[point_owners_[FirstPointAtOrAbove(key)]];
}

std::vector<std::string_view> HashRing::Successors(std::string_view key, int n) const {
  std::vector<std::string_view> out;
  if (point_hashes_.empty() || n <= 0) return out;
  const size_t wanted = std::min(static_cast<size_t>(n), addresses_.size());
  out.reserve(wanted);
  const size_t start = FirstPointAtOrAbove(key);
  // One lap at most; with few addresses the next distinct one is a few
  // points away.
  for (size_t step = 0; step < point_hashes_.size() && out.size() < wanted; ++step) {
    const std::string_view address =
        addresses_[point_owners_[(start + step) % point_hashes_.size()]];
    if (std::find(out.begin(), out.end(), address) == out.end()) out.push_back(address);
  }
  return out;
}

}  // namespace lcache
