// EntryTable: the chained index of a shard. Growth and erasure from any
// place in a chain must keep every other entry findable.

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
  for (int i = 0; i < 1000; i += 3) table_.Erase(Find(std::to_string(i)));
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

}  // namespace
}  // namespace lcache::internal
