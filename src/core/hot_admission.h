// HotAdmission: decides which values fetched from owner peers a Group keeps
// in its hot cache (see HotPromotion in group.h).
//
// kFrequency counts the keys fetched from peers in a FrequencySketch and
// admits a key on its second fetch within the sketch's memory (its counters
// are halved every 10 x `expected_keys` fetches). One sketch miss and a short
// critical section per fetch: nothing next to the round trip it follows.
// kRandom admits one fetch in ten, groupcache's rule.
//
// Thread-safe (std::mutex, so TSan sees it).

#ifndef LCACHE_SRC_CORE_HOT_ADMISSION_H_
#define LCACHE_SRC_CORE_HOT_ADMISSION_H_

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

  // `expected_keys`: about how many distinct keys the hot cache holds, which
  // sizes the sketch (one 8-byte word per key).
  HotAdmission(HotPromotion promotion, int64_t expected_keys);

  // Counts a fetch of `key` and says whether to keep its value.
  bool Admit(std::string_view key);

 private:
  const HotPromotion promotion_;
  std::mutex mu_;
  FrequencySketch sketch_ ABSL_GUARDED_BY(mu_);  // used by kFrequency only
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_CORE_HOT_ADMISSION_H_
