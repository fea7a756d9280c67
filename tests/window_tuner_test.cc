// WindowTuner and its ShadowCache: the shadows behave like the store they
// stand for, and the tuner moves the window towards what the traffic rewards.

#include "store/window_tuner.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "store/frequency_sketch.h"

namespace lcache::internal {
namespace {

uint64_t H(int64_t key) { return FrequencySketch::Hash(absl::StrCat("k", key)); }

// One request as the store makes it: count it, then replay it.
bool Access(ShadowCache& shadow, FrequencySketch& sketch, int64_t key) {
  sketch.Increment(H(key));
  return shadow.Access(H(key), sketch);
}

// Keys 0 .. n-1, each accessed `times` times, in rounds (all n once, then
// again...).
void AccessInRounds(ShadowCache& shadow, FrequencySketch& sketch, int64_t n, int times) {
  for (int round = 0; round < times; ++round) {
    for (int64_t k = 0; k < n; ++k) Access(shadow, sketch, k);
  }
}

TEST(ShadowCacheTest, HoldsAtMostItsCapacityAndHitsWhatItHolds) {
  FrequencySketch sketch(100);
  ShadowCache shadow;
  shadow.Reset(100, 10);
  for (int64_t k = 0; k < 1000; ++k) {
    EXPECT_FALSE(Access(shadow, sketch, k));
    EXPECT_LE(shadow.size(), 100);
  }
  EXPECT_EQ(shadow.size(), 100);
  EXPECT_TRUE(Access(shadow, sketch, 999));  // the newest key is in the window
}

TEST(ShadowCacheTest, AnAllWindowShadowIsLru) {
  // A loop one larger than an LRU cache misses every time.
  FrequencySketch sketch(50);
  ShadowCache shadow;
  shadow.Reset(50, 50);
  int hits = 0;
  for (int pass = 0; pass < 10; ++pass) {
    for (int64_t k = 0; k < 51; ++k) hits += Access(shadow, sketch, k) ? 1 : 0;
  }
  EXPECT_EQ(hits, 0);
}

TEST(ShadowCacheTest, ASmallWindowKeepsFrequentKeysThroughAScan) {
  FrequencySketch sketch(100);
  ShadowCache shadow;
  shadow.Reset(100, 1);
  AccessInRounds(shadow, sketch, 90, 3);
  for (int64_t s = 1000; s < 1500; ++s) Access(shadow, sketch, s);  // one-off keys
  int kept = 0;
  for (int64_t k = 0; k < 90; ++k) kept += shadow.Access(H(k), sketch) ? 1 : 0;
  EXPECT_GE(kept, 85);  // an LRU of 100 would keep none
}

TEST(ShadowCacheTest, AVictimThatWinsStepsAsideForTheNextDuel) {
  // As in the store (tinylfu_store_test): nine keys seen 8 times, then one
  // seen once on probation in front of the strong one left there. A
  // newcomer loses to the strong victim once, then faces the weak one.
  FrequencySketch sketch(10);
  ShadowCache shadow;
  shadow.Reset(10, 0);
  AccessInRounds(shadow, sketch, 9, 8);
  const int64_t weak = 100;
  const int64_t newcomer = 200;
  EXPECT_FALSE(Access(shadow, sketch, weak));
  EXPECT_FALSE(Access(shadow, sketch, newcomer));  // turned away
  EXPECT_FALSE(Access(shadow, sketch, newcomer));  // admitted in place of `weak`
  EXPECT_TRUE(Access(shadow, sketch, newcomer));
  EXPECT_FALSE(Access(shadow, sketch, weak));
}

TEST(ShadowCacheTest, VictimsStepAsideAsInAStoreOnTheSameRung) {
  // The store applies TinyLfuStepAsideMargin to its rung's fraction; a
  // shadow's window is that fraction rounded to whole entries, which must
  // not move it across the 10% line either way.
  ShadowCache shadow;
  shadow.Reset(304, 0);
  shadow.SetWindowFraction(0.1);  // 30 entries: 9.9%
  EXPECT_EQ(shadow.window(), 30);
  EXPECT_EQ(shadow.step_aside_margin(), TinyLfuStepAsideMargin(0.1));
  shadow.Reset(10, 0);
  shadow.SetWindowFraction(0.05);  // 1 entry: 10%
  EXPECT_EQ(shadow.window(), 1);
  EXPECT_EQ(shadow.step_aside_margin(), TinyLfuStepAsideMargin(0.05));
  EXPECT_NE(TinyLfuStepAsideMargin(0.1), TinyLfuStepAsideMargin(0.05));
}

TEST(ShadowCacheTest, MovingTheWindowKeepsTheCapacity) {
  FrequencySketch sketch(200);
  ShadowCache shadow;
  shadow.Reset(200, 2);
  for (int64_t k = 0; k < 500; ++k) Access(shadow, sketch, k % 300);
  shadow.SetWindow(150);
  for (int64_t k = 0; k < 500; ++k) Access(shadow, sketch, k % 300 + 1000);
  EXPECT_EQ(shadow.window(), 150);
  EXPECT_EQ(shadow.size(), 200);
}

TEST(ShadowCacheTest, ChurnDoesNotGrowItsMemory) {
  // The store counts memory_bytes() against its budget when the tuner is
  // sized; it must not grow afterwards. Capacities near a hash table's
  // growth threshold (400-447 of 512 slots) are the ones at risk.
  for (int64_t capacity : {100, 400, 420, 447, 512}) {
    FrequencySketch sketch(capacity);
    ShadowCache shadow;
    shadow.Reset(capacity, capacity / 100);
    const size_t bytes = shadow.memory_bytes();
    for (int64_t k = 0; k < 50 * capacity; ++k) Access(shadow, sketch, k);
    EXPECT_EQ(shadow.memory_bytes(), bytes) << capacity;
  }
}

// Feeds `requests` keys from `next` to a tuner sized for `entries`, as the
// store does, and returns the fraction it settles on.
template <typename Next>
double Tune(int64_t entries, int64_t requests, Next next) {
  FrequencySketch sketch(entries);
  WindowTuner tuner(0.01);
  tuner.Resize(entries);
  for (int64_t t = 0; t < requests; ++t) {
    const uint64_t h = H(next(t));
    sketch.Increment(h);
    if (tuner.Sampled(h)) tuner.Record(h, sketch);
  }
  return tuner.fraction();
}

uint64_t NextRandom(uint64_t& rng) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

TEST(WindowTunerTest, StartsOnTheRungNearestTheInitialFraction) {
  EXPECT_EQ(WindowTuner(0.01).fraction(), 0.01);
  EXPECT_EQ(WindowTuner(0.22).fraction(), 0.2);
  EXPECT_EQ(WindowTuner(5).fraction(), 1);
}

TEST(WindowTunerTest, SamplesOneKeyInRForLargeCaches) {
  WindowTuner tuner(0.01);
  EXPECT_FALSE(tuner.Sampled(H(1)));  // inactive until sized
  tuner.Resize(64 * WindowTuner::kShadowEntries);
  int sampled = 0;
  for (int64_t k = 0; k < 64000; ++k) sampled += tuner.Sampled(H(k)) ? 1 : 0;
  EXPECT_NEAR(sampled, 1000, 150);
}

TEST(WindowTunerTest, GrowsTheWindowWhenKeysDieAfterABurst) {
  // 800 live keys, the oldest 200 replaced every 4000 requests, a cache of
  // 1000: recency is all that predicts a hit.
  uint64_t rng = 7;
  const double f = Tune(1000, 300000, [&](int64_t t) {
    return t / 4000 * 200 + static_cast<int64_t>(NextRandom(rng) % 800);
  });
  EXPECT_GE(f, 0.5);
}

TEST(WindowTunerTest, ClimbsFarWithGrowingSteps) {
  // The same dying-keys traffic: every move up is confirmed by the next, so
  // the steps grow (2, 2, 4, 4 rungs) and the window passes 80% after a handful
  // of decisions instead of one per rung of the ladder.
  FrequencySketch sketch(1000);
  WindowTuner tuner(0.01);
  tuner.Resize(1000);
  uint64_t rng = 7;
  int64_t t = 0;
  int moves = 0;
  for (; t < 300000 && tuner.fraction() < 0.8; ++t) {
    const uint64_t h = H(t / 4000 * 200 + static_cast<int64_t>(NextRandom(rng) % 800));
    sketch.Increment(h);
    moves += tuner.Sampled(h) && tuner.Record(h, sketch) ? 1 : 0;
  }
  EXPECT_GE(tuner.fraction(), 0.8);
  EXPECT_LE(moves, 4);
}

TEST(WindowTunerTest, KeepsTheWindowSmallOnALoop) {
  // A loop larger than the cache: only a small window keeps part of it.
  const double f = Tune(1000, 300000, [](int64_t t) { return t % 1500; });
  EXPECT_LE(f, 0.05);
}

TEST(WindowTunerTest, KeepsTheWindowSmallUnderSkewedStableTraffic) {
  // Hot keys that stay hot, among a long tail of one-off keys.
  uint64_t rng = 11;
  const double f = Tune(1000, 300000, [&](int64_t t) {
    const uint64_t r = NextRandom(rng);
    return r % 2 == 0 ? static_cast<int64_t>(r / 2 % 900) : 1000000 + t;
  });
  EXPECT_LE(f, 0.1);
}

}  // namespace
}  // namespace lcache::internal
