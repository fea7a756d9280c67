// LatencyHistogram: counts durations into fixed buckets, for metrics.
//
// Record() costs one bucket search over kLatencyBuckets bounds and two relaxed
// atomic adds in the calling thread's stripe (its own cache lines, so two
// cores recording at once do not share a line): no lock, no syscall, no
// allocation. It does not read the clock; the caller times what it measures.
//
// Buckets are Prometheus-style upper bounds from 1 µs to 10 s in 1-2.5-5
// steps, plus +Inf: wide enough for an in-process getter (microseconds) and a
// peer deadline (seconds).
//
// Thread-safety: Record and Snapshot are safe for concurrent use. A snapshot
// taken while others record is not a single instant, but its `count` always
// equals the sum of its buckets.

#ifndef LCACHE_LATENCY_HISTOGRAM_H_
#define LCACHE_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"

namespace lcache {

// Upper bounds of the finite buckets, in nanoseconds, ascending. A duration
// d falls into the first bucket with d <= bound, else into the +Inf bucket.
inline constexpr std::array<int64_t, 22> kLatencyBucketBoundsNs = {
    1'000,         2'500,         5'000,         10'000,        25'000,      50'000,
    100'000,       250'000,       500'000,       1'000'000,     2'500'000,   5'000'000,
    10'000'000,    25'000'000,    50'000'000,    100'000'000,   250'000'000, 500'000'000,
    1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};

// The finite buckets and +Inf.
inline constexpr size_t kLatencyBuckets = kLatencyBucketBoundsNs.size() + 1;

// What a histogram held at one point.
struct LatencySnapshot {
  // Per bucket, not cumulative; the last one is +Inf.
  std::array<int64_t, kLatencyBuckets> counts = {};
  int64_t count = 0;                          // the sum of `counts`
  absl::Duration sum = absl::ZeroDuration();  // of every recorded duration
};

class LatencyHistogram {
 public:
  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  // Counts one duration; negative ones (a clock that stepped back) count as 0.
  void Record(absl::Duration d);

  LatencySnapshot Snapshot() const;

  // The bucket `d` falls into (exposed for tests).
  static size_t BucketOf(absl::Duration d);

 private:
  static constexpr size_t kStripes = 8;

  struct alignas(64) Stripe {
    std::array<std::atomic<int64_t>, kLatencyBuckets> counts{};
    std::atomic<int64_t> sum_ns{0};
  };

  std::array<Stripe, kStripes> stripes_;
};

}  // namespace lcache

#endif  // LCACHE_LATENCY_HISTOGRAM_H_
