// EntryTable: the chained index of a shard. Growth and erasure from any
// place in a chain must keep every other entry findable, and the buckets'
// filters must answer most misses without reading an entry.

#include "store/entry_table.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace lcache::internal {
namespace {

class EntryTableTest : public ::testing::Test {
 protected:
  ~EntryTableTest() override {
    for (Entry* e : entries_) e->Unref();
  }
  Entry* Add(const std::string& key) {
    Entry* e = Entry::New(key, "value-" + key, 0, false);
    entries_.push_back(e);
    table_.Insert(e, HashKey(key));
    return e;
  }
  Entry* Find(const std::string& key) { return table_.Find(key, HashKey(key)); }
  void Erase(const std::string& key) {
    Entry* e = Find(key);
    ASSERT_NE(e, nullptr) << key;
    table_.Erase(e);
  }

  EntryTable table_;
  std::vector<Entry*> entries_;
};

TEST_F(EntryTableTest, FindsWhatWasInsertedAcrossGrowth) {
  const size_t initial_buckets = table_.bucket_count();
  for (int i = 0; i < 10000; ++i) Add(std::to_string(i));
  EXPECT_GT(table_.bucket_count(), initial_buckets);
  EXPECT_LE(table_.size(), table_.bucket_count() * 3);  // the load bound
  for (int i = 0; i < 10000; ++i) {
    Entry* e = Find(std::to_string(i));
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->value(), "value-" + std::to_string(i));
  }
  EXPECT_EQ(Find("absent"), nullptr);
  EXPECT_EQ(table_.size(), 10000u);
}

TEST_F(EntryTableTest, EraseFromAnyChainPositionKeepsTheRest) {
  for (int i = 0; i < 1000; ++i) Add(std::to_string(i));
  for (int i = 0; i < 1000; i += 3) Erase(std::to_string(i));
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(Find(std::to_string(i)) == nullptr, i % 3 == 0) << i;
  }
  EXPECT_EQ(table_.size(), 1000u - 334u);
  size_t visited = 0;
  table_.ForEach([&](Entry*) { ++visited; });
  EXPECT_EQ(visited, table_.size());
}

TEST_F(EntryTableTest, KeysAreComparedWholeNotByPrefix) {
  Add("key");
  EXPECT_EQ(Find("ke"), nullptr);
  EXPECT_EQ(Find("key2"), nullptr);
  EXPECT_NE(Find("key"), nullptr);
}

TEST_F(EntryTableTest, MostMissesAreAnsweredByTheBucketFilterAlone) {
  for (int i = 0; i < 20000; ++i) Add("present-" + std::to_string(i));
  int walked = 0;
  for (int i = 0; i < 20000; ++i) walked += table_.MayHold(HashKey("absent-" + std::to_string(i)));
  // Chains of 1.5 to 3 keys set about 3 to 5 of the 16 bits.
  EXPECT_LT(walked, 20000 * 15 / 100);
  for (int i = 0; i < 20000; ++i) {
    EXPECT_TRUE(table_.MayHold(HashKey("present-" + std::to_string(i)))) << i;
  }
}

// A lock-free reader trusts the filter's "no" (absent) without the lock,
// and only it: a walk that finds nothing, or a table without filters, must
// be confirmed under the lock.
TEST_F(EntryTableTest, OnlyTheFiltersNoIsAVerdictWithoutTheLock) {
  for (int i = 0; i < 20000; ++i) Add("present-" + std::to_string(i));
  Epochs::ReadGuard reading;
  int verdicts = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string key = "absent-" + std::to_string(i);
    bool absent = false;
    EXPECT_EQ(table_.FindWithoutLock(key, HashKey(key), &absent), nullptr);
    EXPECT_EQ(absent, !table_.MayHold(HashKey(key))) << key;
    verdicts += absent;
  }
  EXPECT_GT(verdicts, 20000 * 85 / 100);
  for (int i = 0; i < 20000; ++i) {
    const std::string key = "present-" + std::to_string(i);
    bool absent = true;
    EXPECT_NE(table_.FindWithoutLock(key, HashKey(key), &absent), nullptr) << key;
    EXPECT_FALSE(absent);
  }
  table_.StorePlainPointersForTesting();
  bool absent = true;
  EXPECT_EQ(table_.FindWithoutLock("absent", HashKey("absent"), &absent), nullptr);
  EXPECT_FALSE(absent);
}

TEST_F(EntryTableTest, AnErasedKeysStaleBitsCostOneWalk) {
  for (int i = 0; i < 20000; ++i) Add(std::to_string(i));
  for (int i = 0; i < 20000; i += 2) Erase(std::to_string(i));
  auto still_walked = [&] {
    int n = 0;
    for (int i = 0; i < 20000; i += 2) n += table_.MayHold(HashKey(std::to_string(i)));
    return n;
  };
  // Erasing left each key's bits set, even where its chain emptied (a key
  // being replaced must never look absent to a lock-free reader) ...
  EXPECT_EQ(still_walked(), 10000);
  for (int i = 0; i < 20000; i += 2) EXPECT_EQ(Find(std::to_string(i)), nullptr);
  // ... and the walk that found nothing rebuilt the filter from the chain.
  EXPECT_LT(still_walked(), 10000 * 15 / 100);
  for (int i = 1; i < 20000; i += 2) EXPECT_NE(Find(std::to_string(i)), nullptr) << i;
}

TEST_F(EntryTableTest, WithPlainPointersEverythingIsStillFound) {
  for (int i = 0; i < 1000; ++i) Add(std::to_string(i));
  table_.StorePlainPointersForTesting();
  for (int i = 1000; i < 5000; ++i) Add(std::to_string(i));  // and it still grows
  for (int i = 0; i < 5000; i += 2) Erase(std::to_string(i));
  for (int i = 0; i < 5000; ++i) EXPECT_EQ(Find(std::to_string(i)) == nullptr, i % 2 == 0) << i;
  EXPECT_TRUE(table_.MayHold(HashKey("absent")));  // no filter: every lookup walks
  EXPECT_EQ(Find("absent"), nullptr);
}

}  // namespace
}  // namespace lcache::internal
