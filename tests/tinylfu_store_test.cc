// TinyLFU admission on hand-built traces (the invariants every policy keeps
// are in store_test.cc). Entries have charge 10: a 1- or 2-byte key and a
// value that pads it, so capacity 100 holds ten.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/store.h"

namespace lcache {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Not;

std::string Value(std::string_view key) { return std::string(10 - key.size(), 'v'); }

class TinyLfuTest : public ::testing::Test {
 protected:
  void Make(int64_t capacity, double window_fraction, bool adaptive = false) {
    store_ = NewStore(
        {.policy = StorePolicy::kTinyLfu,
         .capacity_bytes = capacity,
         .shards = 1,
         .tinylfu_window_fraction = window_fraction,
         .tinylfu_adaptive_window = adaptive,
         .count_policy_memory = false,  // these tests count entries
         .on_removal = [this](std::string_view key, const ByteView&, RemovalReason reason) {
           if (reason == RemovalReason::kEvicted) evicted_.emplace_back(key);
         }});
  }
  // A read-through access: Get, and Set on a miss. Returns whether it hit.
  bool Access(const std::string& key) {
    if (store_->Get(key)) return true;
    EXPECT_TRUE(store_->Set(key, Value(key)));
    return false;
  }
  // Keys prefix0 .. prefix{n-1}, each accessed `times` times, in rounds
  // (all n keys once, then again...).
  void AccessInRounds(const char* prefix, int n, int times) {
    for (int round = 0; round < times; ++round) {
      for (int k = 0; k < n; ++k) Access(absl::StrCat(prefix, k));
    }
  }
  // `key` is new and loses its duel `times` times in a row: each time it is
  // evicted as it arrives, and nothing else.
  void ExpectTurnedAway(const std::string& key, int times) {
    for (int i = 0; i < times; ++i) {
      EXPECT_FALSE(Access(key));
      EXPECT_THAT(evicted_, ElementsAre(key)) << i;
      evicted_.clear();
    }
  }
  bool Has(const std::string& key) {
    const int64_t hits = store_->Stats().hits;
    store_->Get(key);
    return store_->Stats().hits > hits;
  }

  std::unique_ptr<Store> store_;
  std::vector<std::string> evicted_;
};

TEST_F(TinyLfuTest, ANewKeyReplacesTheVictimOnlyOnceSeenMoreOften) {
  Make(100, /*window_fraction=*/0);  // no window: every new key is judged at once
  for (char c = 'a'; c <= 'j'; ++c) {
    for (int i = 0; i < 3; ++i) Access(std::string(1, c));  // each seen 3 times
  }
  ASSERT_TRUE(evicted_.empty());
  // "x" seen 1, 2, 3 times: not more often than any victim, so it is turned
  // away each time (evicted as it arrives); the fourth time it gets in.
  ExpectTurnedAway("x", 3);
  EXPECT_FALSE(Access("x"));
  ASSERT_EQ(evicted_.size(), 1u);
  EXPECT_NE(evicted_[0], "x");
  EXPECT_TRUE(Has("x"));
  EXPECT_EQ(store_->Len(), 10);
}

TEST_F(TinyLfuTest, AScanOfOneOffKeysLeavesTheFrequentKeysAlone) {
  Make(100, 0.01, /*adaptive=*/true);
  AccessInRounds("h", 9, 3);
  for (int s = 0; s < 90; ++s) EXPECT_FALSE(Access(absl::StrCat("s", s)));
  for (int k = 0; k < 9; ++k) EXPECT_TRUE(Has(absl::StrCat("h", k))) << k;
  // Under LRU a scan of ten keys would have flushed them all.
  for (int k = 0; k < 9; ++k) EXPECT_THAT(evicted_, Not(Contains(absl::StrCat("h", k))));
}

TEST_F(TinyLfuTest, TheWindowLetsNewKeysEarnHitsBeforeTheyAreJudged) {
  Make(100, /*window_fraction=*/0.2);  // a window of two entries, a main region of eight
  AccessInRounds("m", 8, 3);
  // Fresh keys start in the window, so a burst of reads of them hits.
  EXPECT_FALSE(Access("n1"));
  EXPECT_FALSE(Access("n2"));
  EXPECT_TRUE(Access("n1"));
  EXPECT_TRUE(Access("n2"));
  EXPECT_TRUE(evicted_.empty());
  // A third newcomer pushes n1 (seen twice) out of the window; it loses to
  // the main region's victim (seen three times).
  EXPECT_FALSE(Access("n3"));
  EXPECT_THAT(evicted_, ElementsAre("n1"));
  for (int k = 0; k < 8; ++k) EXPECT_TRUE(Has(absl::StrCat("m", k))) << k;
}

TEST_F(TinyLfuTest, AHotNewcomerEventuallyDisplacesAColdKey) {
  Make(100, 0.2);
  for (int k = 0; k < 10; ++k) Access(absl::StrCat("c", k));  // seen once each
  for (int i = 0; i < 5; ++i) Access("hot");
  for (int k = 0; k < 10; ++k) Access(absl::StrCat("o", k));  // pushes "hot" out of the window
  EXPECT_TRUE(Has("hot"));
}

TEST_F(TinyLfuTest, AVictimDefendedOnlyByPastPopularityWearsOut) {
  // Ten keys seen 8 times each, then never again (the hot set moved on):
  // eight are protected, two on probation. A newcomer asked for again and
  // again should not have to out-count them: it faces the two probation
  // victims in turn (they step aside), and each duel a victim wins by a
  // wide margin costs it one count. (With many stale keys on probation,
  // rotation spreads the wear over them, each worn about once, and a single
  // newcomer needs one count more than theirs, as without wear; a moved hot
  // set brings many newcomers, whose duels wear every stale key in turn.)
  Make(100, /*window_fraction=*/0);
  AccessInRounds("o", 10, 8);
  ASSERT_TRUE(evicted_.empty());
  int accesses = 0;
  while (!Has("new") && accesses < 20) {
    Access("new");
    ++accesses;
  }
  // Turned away while it is seen far less often than the victims (3 times:
  // frequency still decides), in by the 7th time (9 without the wear: one
  // more than the victims' 8), before the sketch ages (at 110 counts).
  EXPECT_GT(accesses, 3);
  EXPECT_LE(accesses, 7);
  EXPECT_THAT(evicted_, Contains(::testing::StartsWith("o")));
}

TEST_F(TinyLfuTest, AVictimThatWinsStepsAsideForTheNextDuel) {
  // Nine keys seen 8 times each (eight protected, one on probation), then
  // "w" seen once, which joins probation in front of that strong one.
  Make(100, /*window_fraction=*/0);
  AccessInRounds("s", 9, 8);
  Access("w");
  ASSERT_TRUE(evicted_.empty());
  ASSERT_EQ(store_->Len(), 10);
  // "x" loses its first duel to the strong victim, which then goes to the
  // front of probation; its second duel is against "w", which it
  // out-counts. Were the strong key the victim again, "x" would be turned
  // away until seen 7 times (the victim's 8 less two counts of wear).
  EXPECT_FALSE(Access("x"));
  EXPECT_THAT(evicted_, ElementsAre("x"));
  evicted_.clear();
  EXPECT_FALSE(Access("x"));
  EXPECT_THAT(evicted_, ElementsAre("w"));
  EXPECT_TRUE(Has("x"));
  for (int k = 0; k < 9; ++k) EXPECT_TRUE(Has(absl::StrCat("s", k))) << k;
}

TEST_F(TinyLfuTest, AVictimThatWinsNarrowlyStaysTheVictim) {
  // As above, with the nine keys seen 3 times: "x" (1, 2, then 3 counts)
  // loses each duel by less than TinyLfuStepAsideMargin (3 with a window
  // under 10%), so the same victim judges it every time and "w" behind it
  // stays. This is what lets
  // a loop keep its stable part: its keys are seen about equally often, and
  // a victim that stepped aside on near-ties would let the loop churn the
  // entries behind it.
  Make(100, /*window_fraction=*/0);
  AccessInRounds("s", 9, 3);
  Access("w");
  ASSERT_TRUE(evicted_.empty());
  ExpectTurnedAway("x", 3);
  EXPECT_TRUE(Has("w"));
}

TEST_F(TinyLfuTest, WithALargeWindowANarrowWinnerStepsAside) {
  // A window of 20% (two entries): the tuner would choose it where recency
  // pays, so a victim's lead of a count or two is likely stale. Seven keys
  // seen 3 times each fill the main region but one entry (some of them on
  // probation), then "w" (seen once) joins probation in front of them: two
  // fresh keys push it out of the window, and the main region has room.
  Make(100, /*window_fraction=*/0.2);
  AccessInRounds("s", 7, 3);
  Access("w");
  Access("f1");
  Access("f2");
  ASSERT_TRUE(evicted_.empty());
  ASSERT_EQ(store_->Len(), 10);
  // "x" and f3 push f1 and f2 (seen once) out of the window: each loses to
  // a probation victim seen 3 times, which steps aside. f4 pushes "x" (seen
  // twice) out, which now faces "w" and replaces it. With a small window the
  // victims would have stayed, and "x" lost to one seen 3 times.
  Access("x");
  Access("x");
  Access("f3");
  Access("f4");
  EXPECT_THAT(evicted_, ElementsAre("f1", "f2", "w"));
  EXPECT_TRUE(Has("x"));
  for (int k = 0; k < 7; ++k) EXPECT_TRUE(Has(absl::StrCat("s", k))) << k;
}

TEST_F(TinyLfuTest, ALoopLargerThanTheCacheKeepsAStablePart) {
  // 15 keys in a loop through a cache of 10: LRU misses every time; TinyLFU
  // keeps most of the main region, since a newcomer never beats a victim
  // seen as often.
  Make(100, 0.01, /*adaptive=*/true);
  int hits = 0;
  for (int pass = 0; pass < 20; ++pass) {
    for (int k = 0; k < 15; ++k) hits += Access(absl::StrCat("l", k)) ? 1 : 0;
  }
  const int requests_after_first_pass = 19 * 15;
  // Belady's optimum hits about 9 of 15 per pass here.
  EXPECT_GT(hits, requests_after_first_pass * 8 / 15);
}

// Hits of an entry whose value is held elsewhere at the time (as when other
// threads read it too) skip the lock, and one in 64 of them is applied: a key
// read that way keeps earning its count. Were they all dropped, "hot" would
// stay at the 3 counts it has when it becomes contended, and lose to the
// newcomers seen 8 times each.
TEST_F(TinyLfuTest, AKeyReadWhileItsValueIsHeldKeepsEarningItsCount) {
  Make(100, /*window_fraction=*/0);
  ASSERT_TRUE(store_->Set("hot", Value("hot")));
  const ByteView held = *store_->Get("hot");
  ASSERT_TRUE(store_->Get("hot"));  // held: contended from now on
  const int64_t hits = store_->Stats().hits;
  for (int k = 0; k < 20; ++k) {
    for (int i = 0; i < 8; ++i) {
      Access(absl::StrCat("n", k));
      for (int r = 0; r < 64; ++r) ASSERT_TRUE(store_->Get("hot"));
    }
  }
  EXPECT_THAT(evicted_, Not(Contains("hot")));
  EXPECT_THAT(evicted_, Contains(::testing::StartsWith("n")));  // there was pressure
  // Every hit counted, on either path.
  EXPECT_GE(store_->Stats().hits - hits, 20 * 8 * 64);
}

TEST_F(TinyLfuTest, ANewValueForACachedKeyStaysCached) {
  Make(100, 0.01);
  AccessInRounds("k", 10, 2);
  ASSERT_TRUE(store_->Set("k3", "new-valu"));
  for (int s = 0; s < 30; ++s) Access(absl::StrCat("s", s));
  ASSERT_TRUE(store_->Get("k3").has_value());
  EXPECT_EQ(store_->Get("k3")->view(), "new-valu");
}

TEST_F(TinyLfuTest, UnboundedStoreNeverEvicts) {
  Make(0, 0.01, /*adaptive=*/true);
  for (int i = 0; i < 1000; ++i) Access(absl::StrCat(i % 500));
  EXPECT_EQ(store_->Len(), 500);
  EXPECT_TRUE(evicted_.empty());
  EXPECT_EQ(store_->Stats().hits, 500);
}

TEST(TinyLfuMemoryTest, TheSketchAndTunerCountAgainstTheBudgetAndInOverhead) {
  constexpr int64_t kCapacity = 1 << 20;
  const auto fill = [](bool counted) {
    std::unique_ptr<Store> store = NewStore({.policy = StorePolicy::kTinyLfu,
                                             .capacity_bytes = kCapacity,
                                             .shards = 1,
                                             .count_policy_memory = counted});
    const std::string value(92, 'v');
    for (int i = 0; i < 40000; ++i) store->Set(absl::StrFormat("%08d", i), value);
    return store->Stats();
  };
  const StoreStats counted = fill(true);
  // About 10k entries of 100 bytes: a 16k-word sketch and two shadows.
  EXPECT_GE(counted.policy_bytes, 8 * counted.items);
  EXPECT_GE(counted.overhead_bytes, counted.policy_bytes + 36 * counted.items);
  EXPECT_LE(counted.bytes + counted.policy_bytes, kCapacity);
  EXPECT_GT(counted.bytes + counted.policy_bytes, kCapacity - 200);

  const StoreStats uncounted = fill(false);
  EXPECT_GT(uncounted.bytes, kCapacity - 200);
  EXPECT_GT(uncounted.policy_bytes, 0);
  EXPECT_LT(counted.items, uncounted.items);
}

TEST(TinyLfuMemoryTest, TheSketchIsRefittedOnceTheTunerIsCounted) {
  // 1 MiB of 116-byte entries: while filling, the sketch grows to 16k words
  // (past 8,192 entries); once the tuner's shadows are counted the shard
  // holds fewer than 8,192, and the sketch is folded back to 8k words.
  constexpr int64_t kCapacity = 1 << 20;
  std::unique_ptr<Store> store =
      NewStore({.policy = StorePolicy::kTinyLfu, .capacity_bytes = kCapacity, .shards = 1});
  const std::string value(100, 'v');
  for (int i = 0; i < 40000; ++i) store->Set(absl::StrFormat("key-%011d", i), value);
  const StoreStats stats = store->Stats();
  EXPECT_LT(stats.items, 8192);
  EXPECT_LT(stats.policy_bytes, 8 * 8192 + 80000);  // the sketch and two shadows
  EXPECT_GT(stats.items, (kCapacity - 8 * 8192 - 80000) / 116);
  EXPECT_LE(stats.bytes + stats.policy_bytes, kCapacity);
}

TEST(TinyLfuMemoryTest, AStoreSmallerThanItsSketchStillHoldsEntries) {
  std::unique_ptr<Store> store =
      NewStore({.policy = StorePolicy::kTinyLfu, .capacity_bytes = 200, .shards = 1});
  for (int i = 0; i < 100; ++i) store->Set(absl::StrFormat("%02d", i), "12345678");
  // The policy's share is capped at half the budget, leaving room for ten
  // 10-byte entries; the last newcomer may have lost its admission.
  EXPECT_GE(store->Stats().bytes, 90);
  EXPECT_LE(store->Stats().bytes, 100);
}

TEST(TinyLfuMemoryTest, SetAcceptsExactlyUpToMaxEntryBytes) {
  // MaxEntryBytes is what Group checks a Set against, without the shard's
  // lock: the half of the budget the sketch and the tuner can never take.
  // (A new key may still lose its admission; Set then returns true and
  // reports the eviction.)
  std::unique_ptr<Store> store =
      NewStore({.policy = StorePolicy::kTinyLfu, .capacity_bytes = 100000, .shards = 1});
  for (int i = 0; i < 2000; ++i) store->Set(absl::StrFormat("%04d", i), std::string(40, 'v'));
  const int64_t max = store->MaxEntryBytes();
  EXPECT_EQ(max, 50000);
  EXPECT_TRUE(store->Set("big", std::string(max - 3, 'v')));
  EXPECT_FALSE(store->Set("too-big", std::string(max - 6, 'v')));
}

// Keys that are read in bursts and then never again (sessions, a moving hot
// set): what was popular keeps high sketch counts after it went cold, so a
// small window turns the new keys away; a large window (LRU) serves them.
// The tuner must find that out and grow the window.
TEST(TinyLfuAdaptiveTest, TheWindowGrowsWhenRecencyIsWhatPays) {
  const auto hit_ratio = [](bool adaptive) {
    std::unique_ptr<Store> store =
        NewStore({.policy = StorePolicy::kTinyLfu,
                  .capacity_bytes = 1000 * 10,
                  .shards = 1,
                  .tinylfu_window_fraction = 0.01,
                  .tinylfu_adaptive_window = adaptive,
                  .count_policy_memory = false});
    uint64_t rng = 12345;
    int64_t hits = 0;
    const int64_t requests = 400000;
    for (int64_t t = 0; t < requests; ++t) {
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
      // 800 live keys; every 4000 requests the oldest 200 die for good.
      const int64_t key = t / 4000 * 200 + static_cast<int64_t>(rng % 800);
      const std::string k = absl::StrFormat("%07d", key);
      if (store->Get(k)) {
        ++hits;
      } else {
        store->Set(k, "ab");
      }
    }
    return static_cast<double>(hits) / requests;
  };
  const double fixed = hit_ratio(false);
  const double adaptive = hit_ratio(true);
  EXPECT_GT(adaptive, fixed + 0.05) << "fixed window " << fixed << ", adaptive " << adaptive;
}

}  // namespace
}  // namespace lcache
