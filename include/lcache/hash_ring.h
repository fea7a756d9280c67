// HashRing: consistent hashing of keys onto peer addresses.
//
// Compatible key by key with the Go lru_cache (see wire-protocol.md): each
// address A gets `replicas` points hash(decimal(i) + A) for i in [0,
// replicas); a key belongs to the first point >= hash(key), wrapping around.
// The default hash is CRC-32 IEEE (zlib's crc32) and the default replica
// count 50.
//
// Ties: when two virtual nodes land on the same point, the address added
// later wins, as in the Go program (its map write of the later peer replaces
// the earlier one). Nodes agree on owners when they add the same addresses
// in the same order; etcd lists keys sorted, so discovered rings agree.
//
// A HashRing is immutable once built, so one instance can be shared by any
// number of threads; a peer-set change builds a new ring and swaps it in.

#ifndef LCACHE_HASH_RING_H_
#define LCACHE_HASH_RING_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace lcache {

class HashRing {
 public:
  using HashFn = std::function<uint32_t(std::string_view)>;

  static constexpr int kDefaultReplicas = 50;

  // CRC-32 IEEE of `data`, as zlib's crc32() and Go's crc32.ChecksumIEEE.
  static uint32_t Crc32(std::string_view data);

  // REQUIRES: replicas > 0. A null hash means Crc32.
  explicit HashRing(std::vector<std::string> addresses, int replicas = kDefaultReplicas,
                    HashFn hash = nullptr);

  // The address that owns `key`; empty when the ring has no addresses.
  std::string_view Owner(std::string_view key) const;

  bool empty() const { return points_.empty(); }
  // The distinct addresses, in the order given.
  const std::vector<std::string>& addresses() const { return addresses_; }
  int replicas() const { return replicas_; }

 private:
  struct Point {
    uint32_t hash;
    uint32_t address_index;
  };

  std::vector<std::string> addresses_;
  int replicas_;
  HashFn hash_;
  std::vector<Point> points_;  // sorted by hash, one per distinct hash value
};

}  // namespace lcache

#endif  // LCACHE_HASH_RING_H_
