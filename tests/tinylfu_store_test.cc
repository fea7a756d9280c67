// TinyLFU admission on hand-built traces (the invariants every policy keeps
// are in store_test.cc). Entries have charge 10: a 1- or 2-byte key and a
// value that pads it, so capacity 100 holds ten.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(Access("x"));
    EXPECT_THAT(evicted_, ElementsAre("x")) << i;
    evicted_.clear();
  }
  EXPECT_FALSE(Access("x"));
  ASSERT_EQ(evicted_.size(), 1u);
  EXPECT_NE(evicted_[0], "x");
  EXPECT_TRUE(Has("x"));
  EXPECT_EQ(store_->Len(), 10);
}

TEST_F(TinyLfuTest, AScanOfOneOffKeysLeavesTheFrequentKeysAlone) {
  Make(100, 0.01, /*adaptive=*/true);
  for (int round = 0; round < 3; ++round) {
    for (int k = 0; k < 9; ++k) Access(absl::StrCat("h", k));
  }
  for (int s = 0; s < 90; ++s) EXPECT_FALSE(Access(absl::StrCat("s", s)));
  for (int k = 0; k < 9; ++k) EXPECT_TRUE(Has(absl::StrCat("h", k))) << k;
  // Under LRU a scan of ten keys would have flushed them all.
  for (int k = 0; k < 9; ++k) EXPECT_THAT(evicted_, Not(Contains(absl::StrCat("h", k))));
}

TEST_F(TinyLfuTest, TheWindowLetsNewKeysEarnHitsBeforeTheyAreJudged) {
  Make(100, /*window_fraction=*/0.2);  // a window of two entries, a main region of eight
  for (int round = 0; round < 3; ++round) {
    for (int k = 0; k < 8; ++k) Access(absl::StrCat("m", k));
  }
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

TEST_F(TinyLfuTest, ANewValueForACachedKeyStaysCached) {
  Make(100, 0.01);
  for (int round = 0; round < 2; ++round) {
    for (int k = 0; k < 10; ++k) Access(absl::StrCat("k", k));
  }
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

}  // namespace
}  // namespace lcache
