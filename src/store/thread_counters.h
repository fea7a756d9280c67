// ThreadCounters: counters bumped on every hit, by any thread, without a
// read-modify-write.
//
// A thread whose index (Epochs::ThisThreadIndex: no two live threads share
// one, and a new thread takes the lowest free) is below kOwned has a stripe
// of its own, on its own cache line, and adds to it with a plain load and
// store: a lock-prefixed add costs several ns even on a line no other core
// touches, and a hit bumps two or three counters. With more threads alive,
// the others spread over kShared stripes and add atomically. A thread's
// index passes to a later thread only after it exits, through an
// acquire/release hand-off (epochs.cc), so no count is lost. (Adding from a
// signal handler could lose one; nothing does.)
//
// Sums are read with relaxed loads: each counter is exact once the adds are
// done, and at most a few adds behind while they run.

#ifndef LCACHE_SRC_STORE_THREAD_COUNTERS_H_
#define LCACHE_SRC_STORE_THREAD_COUNTERS_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "store/epochs.h"

namespace lcache::internal {

template <size_t kFields>
class ThreadCounters {
 public:
  void Add(size_t field, int64_t n = 1) {
    const size_t i = Epochs::ThisThreadIndex();
    if (i < kOwned) [[likely]] {
      std::atomic<int64_t>& c = stripes_[i].v[field];
      c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    } else {
      stripes_[kOwned + i % kShared].v[field].fetch_add(n, std::memory_order_relaxed);
    }
  }

  int64_t Sum(size_t field) const {
    int64_t sum = 0;
    for (const Stripe& s : stripes_) sum += s.v[field].load(std::memory_order_relaxed);
    return sum;
  }

 private:
  static constexpr size_t kOwned = 16;
  static constexpr size_t kShared = 4;
  struct alignas(64) Stripe {
    std::array<std::atomic<int64_t>, kFields> v{};
  };
  std::array<Stripe, kOwned + kShared> stripes_;  // the last kShared shared
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_THREAD_COUNTERS_H_
