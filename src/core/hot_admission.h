// HotAdmission: decides which values fetched from owner peers a Group keeps
// in its hot cache (see HotPromotion in group.h).
//
// kFrequency counts the keys fetched from peers in a FrequencySketch and
// admits a key on its second fetch within the sketch's memory (its counters
// are halved every 10 x `expected_keys` fetches), or on its first while the
// hot cache is less than 7/8 full: a copy that displaces nothing costs
// nothing, and a cluster warms (after a start or a ring change) on first
// fetches instead of second ones. The fill is tracked from what the group
// keeps (Kept) and what the hot store removes (Left): reading the store's
// byte count would lock every shard on every fetch. Every kResyncEvery
// fetches the group sets it from the store's own count instead (Resync), so
// a drift (a Set through Group::hot_store() that bypassed Kept) does not
// last. Expired copies count as held until they are swept, in both counts.
// Why 7/8: the store's shards fill unevenly, so by then some of them evict
// already. One sketch miss and a short critical section per fetch: nothing
// next to the round trip it follows. kRandom admits one fetch in ten,
// groupcache's rule, however empty the cache.
//
// Thread-safe (std::mutex, so TSan sees it).

#ifndef LCACHE_SRC_CORE_HOT_ADMISSION_H_
#define LCACHE_SRC_CORE_HOT_ADMISSION_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string_view>

#include "absl/base/thread_annotations.h"

#include "lcache/group.h"
#include "store/frequency_sketch.h"

namespace lcache::internal {

class HotAdmission {
 public:
  // Fetches needed before the frequency rule keeps a key.
  static constexpr int kMinFetches = 2;
  // The random rule keeps one fetch in this many.
  static constexpr int kOneIn = 10;
  // Fetches between two Resyncs.
  static constexpr int kResyncEvery = 4096;

  // `expected_keys`: about how many distinct keys the hot cache holds, which
  // sizes the sketch (one 8-byte word per key). `capacity_bytes`: the hot
  // cache's budget, counted like the store's (key and value bytes).
  HotAdmission(HotPromotion promotion, int64_t expected_keys, int64_t capacity_bytes);

  // Counts a fetch of `key` and says whether to keep its value.
  bool Admit(std::string_view key);

  // The hot cache took `bytes` (a Set that kept its value), or they left it
  // (the store's removal callback: evicted, expired, replaced or removed).
  void Kept(int64_t bytes) { bytes_.fetch_add(bytes, std::memory_order_relaxed); }
  void Left(int64_t bytes) { bytes_.fetch_sub(bytes, std::memory_order_relaxed); }

  // True once per kResyncEvery fetches (to one caller): time to Resync.
  bool ResyncDue() {
    return fetches_.fetch_add(1, std::memory_order_relaxed) % kResyncEvery == kResyncEvery - 1;
  }
  // The hot store's own count of the bytes it holds.
  void Resync(int64_t bytes) { bytes_.store(bytes, std::memory_order_relaxed); }

  // Below this many bytes held, kFrequency keeps every fetch.
  int64_t warm_up_bytes() const { return warm_up_bytes_; }

 private:
  const HotPromotion promotion_;
  const int64_t warm_up_bytes_;
  // Approximate: a removal may be counted before the keep it follows.
  std::atomic<int64_t> bytes_{0};
  std::atomic<uint64_t> fetches_{0};
  std::mutex mu_;
  FrequencySketch sketch_ ABSL_GUARDED_BY(mu_);  // used by kFrequency only
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_CORE_HOT_ADMISSION_H_
