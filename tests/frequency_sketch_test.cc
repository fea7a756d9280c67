// FrequencySketch: counts, saturation, never underestimating, aging, growth.

#include "store/frequency_sketch.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lcache::internal {
namespace {

uint64_t H(const std::string& key) { return FrequencySketch::Hash(key); }

TEST(FrequencySketchTest, CountsUpToFifteenAndSaturates) {
  FrequencySketch sketch(1024);
  EXPECT_EQ(sketch.Frequency(H("k")), 0);
  for (int i = 1; i <= 20; ++i) {
    sketch.Increment(H("k"));
    EXPECT_EQ(sketch.Frequency(H("k")), std::min(i, FrequencySketch::kMaxCount)) << i;
  }
}

TEST(FrequencySketchTest, DecrementTakesOneAndStopsAtZero) {
  FrequencySketch sketch(1024);
  for (int i = 0; i < 3; ++i) sketch.Increment(H("k"));
  sketch.Increment(H("other"));
  sketch.Decrement(H("k"));
  EXPECT_EQ(sketch.Frequency(H("k")), 2);
  for (int i = 0; i < 5; ++i) sketch.Decrement(H("k"));
  EXPECT_EQ(sketch.Frequency(H("k")), 0);
  sketch.Increment(H("k"));
  EXPECT_EQ(sketch.Frequency(H("k")), 1);  // no counter wrapped below zero
  EXPECT_EQ(sketch.Frequency(H("other")), 1);
}

TEST(FrequencySketchTest, ShrinkingKeepsEveryEstimateAnUpperBound) {
  FrequencySketch sketch(4096);
  for (int k = 0; k < 3000; ++k) {
    for (int i = 0; i < k % 6; ++i) sketch.Increment(H(absl::StrCat("key", k)));
  }
  sketch.Shrink(1000);
  EXPECT_EQ(sketch.memory_bytes(), 1024 * sizeof(uint64_t));
  EXPECT_EQ(sketch.sample_size(), 10 * 1000);
  for (int k = 0; k < 3000; ++k) {
    EXPECT_GE(sketch.Frequency(H(absl::StrCat("key", k))), k % 6) << k;
  }
  sketch.Shrink(5000);  // never grows
  EXPECT_EQ(sketch.memory_bytes(), 1024 * sizeof(uint64_t));
}

TEST(FrequencySketchTest, NeverUnderestimatesAndIsMostlyExact) {
  // 2000 keys, 3000 additions, in a sketch sized for 1024 entries: counters
  // are shared, but a count-min estimate is a minimum of over-counts, never
  // below the true count, and mostly equal to it.
  FrequencySketch sketch(1024);
  constexpr int kKeys = 2000;
  for (int k = 0; k < kKeys; ++k) {
    for (int i = 0; i < k % 4; ++i) sketch.Increment(H(absl::StrCat("key", k)));
  }
  ASSERT_LT(sketch.additions(), sketch.sample_size());  // no aging yet
  int exact = 0;
  for (int k = 0; k < kKeys; ++k) {
    const int f = sketch.Frequency(H(absl::StrCat("key", k)));
    EXPECT_GE(f, k % 4) << k;
    exact += f == k % 4 ? 1 : 0;
  }
  EXPECT_GT(exact, kKeys * 8 / 10);
}

TEST(FrequencySketchTest, HalvesEveryCounterAfterASamplePeriod) {
  FrequencySketch sketch(64);
  const int64_t period = sketch.sample_size();
  ASSERT_EQ(period, 10 * 64);
  for (int i = 0; i < 10; ++i) sketch.Increment(H("hot"));
  // Other keys fill the rest of the period, one increment each.
  int64_t n = 0;
  while (sketch.additions() >= 10 && sketch.additions() < period - 1) {
    sketch.Increment(H(absl::StrCat("cold", n++)));
  }
  const int before = sketch.Frequency(H("hot"));
  ASSERT_GE(before, 10);
  sketch.Increment(H(absl::StrCat("cold", n++)));  // the period's last addition
  EXPECT_LT(sketch.additions(), period / 2);
  EXPECT_EQ(sketch.Frequency(H("hot")), before / 2);
}

TEST(FrequencySketchTest, OldPopularityFadesWithinAFewPeriods) {
  FrequencySketch sketch(64);
  for (int i = 0; i < 15; ++i) sketch.Increment(H("was-hot"));
  for (int64_t n = 0; n < 4 * sketch.sample_size(); ++n) {
    sketch.Increment(H(absl::StrCat("new", n % 50)));
  }
  // Halved at least four times: 15 -> 7 -> 3 -> 1 -> 0, up to collisions.
  EXPECT_LE(sketch.Frequency(H("was-hot")), 1);
  EXPECT_GE(sketch.Frequency(H("new7")), 8);  // the current hot keys stay high
}

TEST(FrequencySketchTest, GrowingKeepsWhatItLearnt) {
  FrequencySketch sketch(16);
  for (int k = 0; k < 8; ++k) {
    for (int i = 0; i <= k; ++i) sketch.Increment(H(absl::StrCat("k", k)));
  }
  sketch.EnsureCapacity(100000);
  EXPECT_EQ(sketch.capacity(), 100000);
  EXPECT_EQ(sketch.sample_size(), 10 * 100000);  // the period follows the entries exactly
  EXPECT_EQ(sketch.memory_bytes(), 131072 * 8);  // the table is a power of two
  for (int k = 0; k < 8; ++k) EXPECT_GE(sketch.Frequency(H(absl::StrCat("k", k))), k + 1) << k;
  sketch.EnsureCapacity(10);  // never shrinks
  EXPECT_EQ(sketch.capacity(), 100000);
}

TEST(FrequencySketchTest, HashIsTheSameInEveryRun) {
  // lcache-sim's determinism rests on this: std::hash of a string_view is
  // unseeded in libstdc++. A seeded hash would differ between processes.
  EXPECT_EQ(FrequencySketch::Hash("key"), std::hash<std::string_view>{}("key"));
  EXPECT_NE(FrequencySketch::Hash("key"), FrequencySketch::Hash("kez"));
}

}  // namespace
}  // namespace lcache::internal
