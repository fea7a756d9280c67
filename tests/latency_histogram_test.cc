// LatencyHistogram: bucket bounds, counts and sums, and exact totals when
// several threads record at once.

#include "lcache/latency_histogram.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace lcache {
namespace {

TEST(LatencyHistogramTest, BoundsAreInclusiveUpperLimits) {
  EXPECT_EQ(LatencyHistogram::BucketOf(absl::ZeroDuration()), 0u);
  EXPECT_EQ(LatencyHistogram::BucketOf(absl::Microseconds(1)), 0u);
  EXPECT_EQ(LatencyHistogram::BucketOf(absl::Nanoseconds(1001)), 1u);
  EXPECT_EQ(LatencyHistogram::BucketOf(absl::Microseconds(3)), 2u);  // (2.5 µs, 5 µs]
  EXPECT_EQ(LatencyHistogram::BucketOf(absl::Milliseconds(1)), 9u);
  EXPECT_EQ(LatencyHistogram::BucketOf(absl::Seconds(10)), kLatencyBuckets - 2);
  EXPECT_EQ(LatencyHistogram::BucketOf(absl::Seconds(10) + absl::Nanoseconds(1)),
            kLatencyBuckets - 1);  // +Inf
  EXPECT_EQ(LatencyHistogram::BucketOf(absl::Hours(1)), kLatencyBuckets - 1);
  EXPECT_EQ(LatencyHistogram::BucketOf(-absl::Seconds(1)), 0u);  // a clock step back
}

TEST(LatencyHistogramTest, BoundsAscend) {
  for (size_t i = 1; i < kLatencyBucketBoundsNs.size(); ++i) {
    EXPECT_LT(kLatencyBucketBoundsNs[i - 1], kLatencyBucketBoundsNs[i]) << i;
  }
}

TEST(LatencyHistogramTest, SnapshotCountsAndSums) {
  LatencyHistogram h;
  EXPECT_EQ(h.Snapshot().count, 0);
  h.Record(absl::Microseconds(1));
  h.Record(absl::Microseconds(2));
  h.Record(absl::Milliseconds(1));
  h.Record(absl::Minutes(1));
  h.Record(-absl::Milliseconds(5));  // counts as 0
  const LatencySnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(s.counts[0], 2);
  EXPECT_EQ(s.counts[1], 1);
  EXPECT_EQ(s.counts[LatencyHistogram::BucketOf(absl::Milliseconds(1))], 1);
  EXPECT_EQ(s.counts[kLatencyBuckets - 1], 1);
  EXPECT_EQ(s.sum, absl::Minutes(1) + absl::Milliseconds(1) + absl::Microseconds(3));
}

TEST(LatencyHistogramTest, ConcurrentRecordsAreAllCounted) {
  constexpr int kThreads = 12;  // more than the stripes, so some share one
  constexpr int kPerThread = 20000;
  LatencyHistogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < kPerThread; ++i) h.Record(absl::Microseconds(t + 1));
    });
  }
  for (std::thread& t : threads) t.join();
  const LatencySnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, int64_t{kThreads} * kPerThread);
  int64_t want_us = 0;
  for (int t = 0; t < kThreads; ++t) want_us += int64_t{t + 1} * kPerThread;
  EXPECT_EQ(s.sum, absl::Microseconds(want_us));
  EXPECT_EQ(s.counts[0], kPerThread);  // 1 µs
  EXPECT_EQ(s.counts[1], kPerThread);  // 2 µs
}

}  // namespace
}  // namespace lcache
