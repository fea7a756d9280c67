// FrequencySketch: an approximate, aging access counter for TinyLFU.
//
// A count-min sketch of 4-bit counters (0..15) answering "about how often was
// this key seen recently?" in a few bytes per cached entry, after Einziger,
// Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission Policy".
// A key's four counters all lie in one 64-byte block (8 words, 16 counters
// each, one counter in each of four word pairs), so an Increment or a
// Frequency costs one cache miss, not four: that keeps the store's hit path
// cheap. The estimate is the minimum of the four counters, which is never
// below the true count of the current period (up to saturation at 15)
// unless Decrement() is used: it lowers counters other keys share too.
//
// Aging: after sample_size() increments every counter is halved, so the
// sketch forgets old popularity and a hot set that moves is learnt again
// within one period. The period is ten times the number of entries the
// sketch was sized for, as in Caffeine.
//
// Growth: EnsureCapacity() doubles the table by copying each block into both
// of its successors. A key's block index gains one hash bit, and its counters
// sit at the same offsets in either copy, so every estimate stays an upper
// bound of the count and nothing learnt so far is lost. Shrink() folds
// it back.
//
// Memory: one 8-byte word per entry it is sized for (rounded up to a power
// of two, at least one block). Not thread-safe: the owning shard's mutex
// guards it. All operations are O(1) except the periodic O(table) halving.

#ifndef LCACHE_SRC_STORE_FREQUENCY_SKETCH_H_
#define LCACHE_SRC_STORE_FREQUENCY_SKETCH_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

namespace lcache::internal {

class FrequencySketch {
 public:
  static constexpr int kMaxCount = 15;

  // Sized for `entries` (at least one 64-byte block).
  explicit FrequencySketch(int64_t entries = 0);

  // Grows the table, keeping the counts, when `entries` exceeds what it was sized for.
  void EnsureCapacity(int64_t entries);

  // The hash the sketch wants for a key. Unlike the store's HashKey (abseil's,
  // seeded per process), it is the same in every run, so that a replay of a
  // trace (lcache-sim) gives the same admissions and hit ratio every time.
  static uint64_t Hash(std::string_view key) { return std::hash<std::string_view>{}(key); }

  // The estimated count of the key with this hash (see Hash) since the
  // last agings, 0..kMaxCount.
  int Frequency(uint64_t hash) const;

  // Counts one access; halves every counter once sample_size() increments
  // have happened since the last halving.
  void Increment(uint64_t hash);

  // Shrinks the table to what `entries` needs, if it is larger, by folding
  // its upper half onto the lower (the inverse of growth), each counter the
  // larger of the two, so every estimate stays an upper bound. For a shard
  // whose entry count fell once the policy's own memory was counted.
  void Shrink(int64_t entries);

  // Takes one from each of the key's counters that is above zero.
  void Decrement(uint64_t hash);

  // Halves every counter now, as at the end of a sample period.
  void Age() { Halve(); }

  // Starts fetching the key's block into the CPU cache.
  void Prefetch(uint64_t hash) const { __builtin_prefetch(&table_[BlockOf(Spread(hash))]); }

  int64_t sample_size() const { return sample_size_; }
  // Increments counted towards the next halving.
  int64_t additions() const { return additions_; }
  int64_t capacity() const { return entries_; }
  size_t memory_bytes() const { return table_.size() * sizeof(uint64_t); }

 private:
  static constexpr size_t kBlockWords = 8;

  // Re-mixes the hash so that every bit of it depends on every key bit.
  static uint64_t Spread(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
  }
  // The first word of the key's block. The low 32 bits of the spread hash
  // pick the counters inside it, the high bits the block.
  size_t BlockOf(uint64_t spread) const {
    return static_cast<size_t>((spread >> 32) & block_mask_) * kBlockWords;
  }
  void Halve();

  std::vector<uint64_t> table_;
  uint64_t block_mask_ = 0;  // number of blocks - 1
  int64_t entries_ = 0;
  int64_t sample_size_ = 0;
  int64_t additions_ = 0;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_FREQUENCY_SKETCH_H_
