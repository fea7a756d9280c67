// HashRing: consistent hashing of keys onto peer addresses, in two kinds.
//
// RingKind::kGroupcache (the default) is the Go lru_cache's ring, key for key
// (docs/PROTOCOL.md, 4.1): each address A gets `replicas` points
// hash(decimal(i) + A) for i in [0, replicas); a key belongs to the first
// point >= hash(key), wrapping around. The hash is CRC-32 IEEE (zlib's crc32)
// and the replica count 50. Go and C++ nodes must use this kind to share a
// ring. Its balance is poor (max/mean node load about 1.3 at 10 nodes): CRC-32
// of near-identical labels is correlated, so more points do not help.
//
// RingKind::kBalanced is ours, for clusters of C++ nodes only: XXH3-64
// (xxHash, stable output since 0.8.0) with kBalancedReplicas points per
// address at XXH3_64bits_withSeed(A, seed = i), keys at XXH3_64bits(key), the
// same first-point-at-or-above rule. With 2000 points max/mean stays under
// 1.10 at 10 and 50 nodes, and a join moves the ideal 1/(N+1) of the keys,
// all to the new node (docs/BENCHMARKS.md, "A balanced ring").
//
// Ties (both kinds): when two virtual nodes land on the same point, the
// address added later wins, as in the Go program (its map write of the later
// peer replaces the earlier one). Nodes agree on owners when they add the
// same addresses in the same order; etcd lists keys sorted, so discovered
// rings agree. (With 64-bit points a tie is practically impossible.)
//
// Cost: Owner is one hash of the key, a bucket index lookup and a search
// among the one or two points of that bucket. Building is O(P log P) for
// P = addresses x replicas points (100k points for a balanced ring of 50
// nodes: 1.2 MB of points and 0.5 MB of index).
//
// A HashRing is immutable once built, so one instance can be shared by any
// number of threads; a peer-set change builds a new ring and swaps it in.

#ifndef LCACHE_HASH_RING_H_
#define LCACHE_HASH_RING_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lcache {

enum class RingKind {
  kGroupcache,  // CRC-32, 50 points: the Go program's ring (wire contract)
  kBalanced,    // XXH3-64, 2000 points: C++-only clusters
};

// "groupcache" or "balanced"; nullopt for anything else.
std::optional<RingKind> ParseRingKind(std::string_view name);
const char* RingKindName(RingKind kind);

class HashRing {
 public:
  using HashFn = std::function<uint32_t(std::string_view)>;

  static constexpr int kDefaultReplicas = 50;
  static constexpr int kBalancedReplicas = 2000;

  // CRC-32 IEEE of `data`, as zlib's crc32() and Go's crc32.ChecksumIEEE.
  static uint32_t Crc32(std::string_view data);
  // XXH3-64 of `data` with `seed` (xxHash's XXH3_64bits_withSeed).
  static uint64_t Xxh3(std::string_view data, uint64_t seed = 0);

  // The kind's default replica count.
  static int DefaultReplicas(RingKind kind) {
    return kind == RingKind::kBalanced ? kBalancedReplicas : kDefaultReplicas;
  }

  // A groupcache ring. REQUIRES: replicas > 0. A null hash means Crc32.
  explicit HashRing(std::vector<std::string> addresses, int replicas = kDefaultReplicas,
                    HashFn hash = nullptr);

  // A ring of `kind`; replicas == 0 means the kind's default.
  // REQUIRES: replicas >= 0.
  HashRing(RingKind kind, std::vector<std::string> addresses, int replicas = 0);

  // The address that owns `key`; empty when the ring has no addresses.
  std::string_view Owner(std::string_view key) const;

  // The owner of `key` and the distinct addresses that follow it on the
  // ring, walking clockwise from the key's point, at most `n` in all: where
  // the key's replicas live (RingPicker). The second is the owner on the
  // ring without the first (the node that inherits the key if the owner
  // leaves), and so on, except where two points collided and the loser's
  // point was dropped (with 64-bit points, practically never). Empty for an
  // empty ring or n <= 0.
  std::vector<std::string_view> Successors(std::string_view key, int n) const;

  bool empty() const { return point_hashes_.empty(); }
  // The distinct addresses, in the order given.
  const std::vector<std::string>& addresses() const { return addresses_; }
  int replicas() const { return replicas_; }
  RingKind kind() const { return kind_; }
  // Distinct points on the ring (addresses x replicas minus collisions).
  size_t points() const { return point_hashes_.size(); }

 private:
  void Build(std::vector<std::string> addresses);
  uint64_t KeyHash(std::string_view key) const;
  // The index of the key's point. REQUIRES: !empty().
  size_t FirstPointAtOrAbove(std::string_view key) const;

  RingKind kind_;
  std::vector<std::string> addresses_;
  int replicas_;
  HashFn hash_;  // kGroupcache only; null means Crc32, called directly
  // The points, sorted by hash, one per distinct hash value, as two arrays:
  // the binary search touches only the hashes.
  std::vector<uint64_t> point_hashes_;
  std::vector<uint32_t> point_owners_;  // index into addresses_
  // Where each range of hashes starts in point_hashes_ (see Build): turns
  // the binary search over all points into one over a bucket of one or two.
  static constexpr int kMaxIndexBits = 24;
  int index_shift_ = 64;
  std::vector<uint32_t> bucket_start_;
};

}  // namespace lcache

#endif  // LCACHE_HASH_RING_H_
