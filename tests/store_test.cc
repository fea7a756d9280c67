// Store: the invariants every policy keeps (a typed suite, as CacheLib does),
// then what is particular to LRU and LRU-2 (TinyLFU: tinylfu_store_test.cc).

#include "lcache/store.h"

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/clock.h"
#include "store/sharded_store.h"

namespace lcache {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

// Entries of charge 10: a 1-byte key and a 9-byte value.
std::string Value9(char c) { return std::string(9, c); }

template <StorePolicy P>
struct PolicyTag {
  static constexpr StorePolicy kPolicy = P;
};

template <typename Tag>
class StoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> Make(int64_t capacity, StoreOptions extra = {}) {
    extra.policy = Tag::kPolicy;
    extra.capacity_bytes = capacity;
    if (extra.shards == 0) extra.shards = 1;
    if (extra.clock == nullptr) extra.clock = &clock_;
    return NewStore(extra);
  }
  absl::Time In(absl::Duration d) { return clock_.Now() + d; }

  ManualClock clock_;
};

using Policies = ::testing::Types<PolicyTag<StorePolicy::kLru>, PolicyTag<StorePolicy::kLru2>,
                                  PolicyTag<StorePolicy::kTinyLfu>>;
TYPED_TEST_SUITE(StoreTest, Policies);

TYPED_TEST(StoreTest, MissThenHit) {
  auto store = this->Make(0);
  EXPECT_FALSE(store->Get("k").has_value());
  ASSERT_TRUE(store->Set("k", "value"));
  std::optional<ByteView> v = store->Get("k");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->view(), "value");
  StoreStats s = store->Stats();
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.items, 1);
}

TYPED_TEST(StoreTest, GetWithExpiryTellsWhenTheEntryExpires) {
  auto store = this->Make(0);
  EXPECT_FALSE(store->GetWithExpiry("k").has_value());
  ASSERT_TRUE(store->Set("k", "value", this->In(absl::Seconds(5))));
  ASSERT_TRUE(store->Set("forever", "v"));
  std::optional<ExpiringValue> v = store->GetWithExpiry("k");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->value.view(), "value");
  EXPECT_EQ(v->expire_at, this->In(absl::Seconds(5)));
  EXPECT_EQ(store->GetWithExpiry("forever")->expire_at, absl::InfiniteFuture());
  this->clock_.Advance(absl::Seconds(5));
  EXPECT_FALSE(store->GetWithExpiry("k").has_value());  // expired: a miss, as Get has it
  StoreStats s = store->Stats();
  EXPECT_EQ(s.hits, 2);
  EXPECT_EQ(s.misses, 2);
  EXPECT_EQ(s.expirations, 1);
}

TYPED_TEST(StoreTest, HitSharesTheEntryInsteadOfCopying) {
  auto store = this->Make(0);
  ASSERT_TRUE(store->Set("k", "value"));
  const char* first = store->Get("k")->data();
  EXPECT_EQ(store->Get("k")->data(), first);
}

// Contended hits (sharded_store.h): a small value held by someone at the
// time of a hit is copied from then on, whichever path the hit takes; a
// large one is always shared.
TYPED_TEST(StoreTest, ASmallValueHeldElsewhereIsCopiedOutALargeOneShared) {
  auto store = this->Make(0);
  ASSERT_TRUE(store->Set("small", "value"));
  ASSERT_TRUE(store->Set("large", std::string(internal::kMaxCopiedValue + 1, 'v')));
  ByteView small = *store->Get("small");
  ByteView large = *store->Get("large");
  ByteView small2 = *store->Get("small");  // `small` is held: marks the entry
  ByteView small3 = *store->Get("small");
  EXPECT_EQ(small2.data(), small.data());
  EXPECT_NE(small3.data(), small.data());
  EXPECT_EQ(small3, "value");
  for (int i = 0; i < 200; ++i) {  // TinyLFU: also the one in 64 that takes the lock
    ByteView again = *store->Get("small");
    EXPECT_NE(again.data(), small.data());
    EXPECT_EQ(again, "value");
  }
  EXPECT_EQ(store->Get("large")->data(), large.data());
  EXPECT_EQ(store->Get("large")->data(), large.data());
}

TYPED_TEST(StoreTest, EvictedValueStaysValidForItsHolder) {
  auto store = this->Make(40);  // for LRU-2: a history of one entry, a main of three
  ASSERT_TRUE(store->Set("a", Value9('a')));
  ByteView held = *store->Get("a");
  // Each newcomer is read through more often than "a", so that a policy
  // that weighs frequency (TinyLFU) prefers it too.
  for (char c = 'b'; c <= 'z'; ++c) {
    const std::string key(1, c);
    ASSERT_TRUE(store->Set(key, Value9(c)));
    for (int i = 0; i < 3; ++i) {
      if (!store->Get(key)) {
        ASSERT_TRUE(store->Set(key, Value9(c)));
      }
    }
  }
  EXPECT_FALSE(store->Get("a").has_value());
  EXPECT_EQ(held.view(), Value9('a'));  // ASan would flag a use after free
}

TYPED_TEST(StoreTest, ByteAccountingCountsKeyPlusValueAndFollowsUpdates) {
  auto store = this->Make(0);
  ASSERT_TRUE(store->Set("key", "12345"));
  EXPECT_EQ(store->Bytes(), 8);
  ASSERT_TRUE(store->Set("key", "1234567890"));  // update: replaced, not added
  EXPECT_EQ(store->Bytes(), 13);
  EXPECT_EQ(store->Len(), 1);
  ASSERT_TRUE(store->Set("key", ""));
  EXPECT_EQ(store->Bytes(), 3);
  EXPECT_EQ(store->Get("key")->view(), "");
  EXPECT_TRUE(store->Remove("key"));
  EXPECT_FALSE(store->Remove("key"));
  EXPECT_EQ(store->Bytes(), 0);
  EXPECT_EQ(store->Len(), 0);
}

TYPED_TEST(StoreTest, NeverHoldsMoreThanItsCapacity) {
  auto store = this->Make(1000, {.shards = 4});
  for (int i = 0; i < 5000; ++i) {
    std::string key = "key-" + std::to_string(i);
    ASSERT_TRUE(store->Set(key, std::string(i % 37, 'v')));
    if (i % 3 == 0) store->Get("key-" + std::to_string(i / 2));
    ASSERT_LE(store->Bytes(), 1000);
  }
  StoreStats s = store->Stats();
  EXPECT_GT(s.evictions, 0);
  EXPECT_EQ(s.items, store->Len());
}

TYPED_TEST(StoreTest, RejectsAnEntryLargerThanItsQueueAndDropsTheOldValue) {
  auto store = this->Make(40);
  ASSERT_TRUE(store->Set("k", "small"));
  EXPECT_FALSE(store->Set("k", std::string(100, 'x')));
  EXPECT_FALSE(store->Get("k").has_value());  // the old value is stale now
  EXPECT_EQ(store->Bytes(), 0);
  EXPECT_FALSE(store->Set(std::string(kMaxStoreKeyBytes + 1, 'k'), "v"));
}

TYPED_TEST(StoreTest, ZeroCapacityIsUnbounded) {
  auto store = this->Make(0);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(store->Set(std::to_string(i), "v"));
  EXPECT_EQ(store->Len(), 10000);
  EXPECT_EQ(store->Stats().evictions, 0);
}

TYPED_TEST(StoreTest, ExpiredEntryIsAMissAndIsRemovedOnRead) {
  auto store = this->Make(0);
  ASSERT_TRUE(store->Set("ttl", "v", this->In(absl::Seconds(10))));
  ASSERT_TRUE(store->Set("forever", "v"));
  this->clock_.Advance(absl::Seconds(9));
  EXPECT_TRUE(store->Get("ttl").has_value());
  this->clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(store->Get("ttl").has_value());
  EXPECT_TRUE(store->Get("forever").has_value());
  StoreStats s = store->Stats();
  EXPECT_EQ(s.items, 1);
  EXPECT_EQ(s.expirations, 1);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.hits, 2);
}

TYPED_TEST(StoreTest, SetsReclaimExpiredEntriesThatNobodyReads) {
  auto store = this->Make(0);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(store->Set("old-" + std::to_string(i), "v", this->In(absl::Seconds(1))));
  }
  this->clock_.Advance(absl::Seconds(2));
  // No read of the old keys: only the incremental sweep of new writes.
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(store->Set("new-" + std::to_string(i), "v"));
  EXPECT_EQ(store->Len(), 100);
  EXPECT_EQ(store->Stats().expirations, 100);
}

TYPED_TEST(StoreTest, ReclaimExpiredSweepsEveryShard) {
  auto store = this->Make(0, {.shards = 8});
  for (int i = 0; i < 1000; ++i) {
    const bool expiring = i % 2 == 0;
    ASSERT_TRUE(store->Set(std::to_string(i), "v",
                           expiring ? this->In(absl::Seconds(1)) : absl::InfiniteFuture()));
  }
  EXPECT_EQ(store->ReclaimExpired(1000), 0);  // nothing has expired yet
  this->clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(store->ReclaimExpired(1000), 500);
  EXPECT_EQ(store->Len(), 500);
  EXPECT_EQ(store->Bytes(), store->Stats().bytes);
}

TYPED_TEST(StoreTest, RemovalCallbackReportsEveryReasonAndMayReenterTheStore) {
  std::vector<std::pair<std::string, RemovalReason>> seen;
  Store* self = nullptr;
  auto store = this->Make(
      40, {.on_removal = [&](std::string_view key, const ByteView& value, RemovalReason reason) {
        EXPECT_FALSE(value.empty());
        self->Len();  // would deadlock if called under the shard lock
        seen.emplace_back(std::string(key), reason);
      }});
  self = store.get();
  ASSERT_TRUE(store->Set("r", Value9('1')));
  ASSERT_TRUE(store->Set("r", Value9('2')));  // kReplaced
  ASSERT_TRUE(store->Remove("r"));            // kRemoved
  ASSERT_TRUE(store->Set("t", Value9('t'), this->In(absl::Seconds(1))));
  this->clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(store->Get("t"));  // kExpired
  EXPECT_THAT(seen,
              ElementsAre(Pair("r", RemovalReason::kReplaced), Pair("r", RemovalReason::kRemoved),
                          Pair("t", RemovalReason::kExpired)));
  seen.clear();
  for (char c : std::string("abcdefgh")) ASSERT_TRUE(store->Set(std::string(1, c), Value9(c)));
  ASSERT_FALSE(seen.empty());
  for (const auto& [key, reason] : seen) EXPECT_EQ(reason, RemovalReason::kEvicted) << key;
  EXPECT_EQ(static_cast<int64_t>(seen.size()), store->Stats().evictions);
}

TYPED_TEST(StoreTest, ReportsItsOverheadPerEntry) {
  auto store = this->Make(0);
  for (int i = 0; i < 1000; ++i) {
    char key[17];
    snprintf(key, sizeof(key), "key-%012d", i);
    ASSERT_TRUE(store->Set(key, std::string(100, 'v')));
  }
  StoreStats s = store->Stats();
  EXPECT_EQ(s.bytes, 116 * 1000);
  // A 32-byte header plus malloc rounding, and a table slot: well under
  // a node-per-container layout (~100 bytes), and never nothing.
  const double per_entry = static_cast<double>(s.overhead_bytes) / s.items;
  EXPECT_GT(per_entry, 32);
  EXPECT_LT(per_entry, 80);
}

// Many threads reading, writing and removing overlapping keys in a small
// store: no lost accounting, never over capacity, and every value read is
// the one written for its key. Run under TSan in CI.
TYPED_TEST(StoreTest, ConcurrentMixedOperationsKeepInvariants) {
  constexpr int kThreads = 4;
  constexpr int kOps = 20000;
  constexpr int64_t kCapacity = 4096;
  auto store = this->Make(kCapacity, {.shards = 4, .clock = Clock::Real()});
  std::atomic<int> wrong_values{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      uint32_t x = 2463534242u + t;
      for (int i = 0; i < kOps; ++i) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        const std::string key = absl::StrCat("k", x % 200);
        switch (x % 7) {
          case 0:
            store->Remove(key);
            break;
          case 1:
          case 2:
            store->Set(key, absl::StrCat(key, "-value"), absl::Now() + absl::Milliseconds(x % 50));
            break;
          default:
            if (std::optional<ByteView> v = store->Get(key);
                v && v->view() != absl::StrCat(key, "-value")) {
              ++wrong_values;
            }
        }
        if (i % 1000 == 0) store->ReclaimExpired(16);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong_values.load(), 0);
  StoreStats s = store->Stats();
  EXPECT_LE(s.bytes, kCapacity);
  EXPECT_EQ(s.items, store->Len());
  EXPECT_GT(s.hits, 0);
}

// Readers of a few hot keys (the lock-free hit path; for TinyLFU, its
// lossy hits of contended entries and the locked hits of the entries found)
// against writers that replace, remove and evict them and grow the table:
// every value read is one written for its key, and whole. Under ASan a read
// of a freed entry or bucket array fails; under TSan, any unordered access.
TYPED_TEST(StoreTest, HitsRaceReplacementsRemovalsAndGrowthSafely) {
  constexpr int kReaders = 2;
  constexpr int kWriters = 2;
  constexpr int kOps = 20000;
  auto store = this->Make(64 << 10, {.shards = 2, .clock = Clock::Real()});
  auto value = [](const std::string& key, int version) {
    // Some values are too large to be copied out: shared under the lock.
    const size_t pad = version % 5 == 0 ? internal::kMaxCopiedValue : 8;
    return absl::StrCat(key, "=", std::string(pad, 'a' + version % 26), "|");
  };
  std::atomic<int> wrong{0};
  std::atomic<int64_t> hits{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kOps; ++i) {
        const std::string hot = absl::StrCat("hot", i % 8);
        if (i % 11 == 0) {
          store->Remove(hot);
        } else {
          store->Set(hot, value(hot, i + t));
        }
        // Cold keys: evictions, and growth of the tables.
        const std::string cold = absl::StrCat("cold", t, "-", i);
        store->Set(cold, value(cold, i));
      }
    });
  }
  for (int t = 0; t < kReaders; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 4 * kOps; ++i) {
        const std::string key = absl::StrCat("hot", (i + t) % 8);
        if (std::optional<ByteView> v = store->Get(key)) {
          ++hits;
          const std::string_view got = v->view();
          if (!got.starts_with(key + "=") || !got.ends_with("|")) ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(hits.load(), 0);
  EXPECT_LE(store->Bytes(), 64 << 10);
}

// Misses the buckets' filters prove are answered without the lock
// (entry_table.h). A key that stays must never be one of them while writers
// grow the table, fill chains and empty them around it, nor while its own
// value is being replaced (its old entry leaves before the new one comes).
TYPED_TEST(StoreTest, AKeyThatStaysIsNeverMissedWhileTheTableChanges) {
  auto store = this->Make(0, {.shards = 1, .clock = Clock::Real()});
  constexpr int kStable = 64;
  for (int i = 0; i < kStable; ++i) ASSERT_TRUE(store->Set(absl::StrCat("stable", i), "v"));
  std::atomic<bool> stop{false};
  std::atomic<int64_t> missed{0};
  std::atomic<int64_t> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; !stop; i = (i + 1) % kStable) {
        if (!store->Get(absl::StrCat("stable", i))) missed.fetch_add(1);
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 20000; ++i) store->Set(absl::StrCat("churn", round, "-", i), "v");
    for (int i = 0; i < 20000; ++i) store->Remove(absl::StrCat("churn", round, "-", i));
    for (int again = 0; again < 200; ++again) {
      for (int i = 0; i < kStable; ++i) EXPECT_TRUE(store->Set(absl::StrCat("stable", i), "w"));
    }
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(missed.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(store->Len(), kStable);
}

// The hand-off's order reads the CLOCK bits that lock-free hits set
// meanwhile: every entry must still be visited, once.
TYPED_TEST(StoreTest, ForEachByValueVisitsEveryEntryOnceWhileHitsGoOn) {
  auto store = this->Make(0, {.shards = 2, .clock = Clock::Real()});
  constexpr int kKeys = 2000;
  for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(store->Set(absl::StrCat("k", i), "v"));
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    for (uint32_t x = 1; !stop; x = x * 1664525 + 1013904223)
      store->Get(absl::StrCat("k", x % kKeys));
  });
  for (int round = 0; round < 20; ++round) {
    std::set<std::string> seen;
    int visits = 0;
    store->ForEachByValue(INT64_MAX, [&](std::string_view key, const ExpiringValue&) {
      seen.emplace(key);
      ++visits;
      return true;
    });
    EXPECT_EQ(visits, kKeys);
    EXPECT_EQ(seen.size(), static_cast<size_t>(kKeys));
  }
  stop = true;
  reader.join();
}

// Peek (the upkeep's read) is no use of the key: nothing counts it, and an
// expired entry it finds stays for the sweep.
TYPED_TEST(StoreTest, PeekReadsWithoutCountingOrErasing) {
  auto store = this->Make(0);
  ASSERT_TRUE(store->Set("k", "value", this->In(absl::Seconds(5))));
  ASSERT_TRUE(store->Set("forever", "v"));
  std::optional<ExpiringValue> v = store->Peek("k");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->value, "value");
  EXPECT_EQ(v->expire_at, this->In(absl::Seconds(5)));
  EXPECT_EQ(store->Peek("forever")->expire_at, absl::InfiniteFuture());
  EXPECT_FALSE(store->Peek("absent").has_value());
  this->clock_.Advance(absl::Seconds(5));
  EXPECT_FALSE(store->Peek("k").has_value());
  const StoreStats s = store->Stats();
  EXPECT_EQ(s.hits, 0);
  EXPECT_EQ(s.misses, 0);
  EXPECT_EQ(s.expirations, 0);
  EXPECT_EQ(s.items, 2);
}

// A pass (a hand-off, a replica resync) holds no entry while it runs: hits
// meanwhile must not find their values held by someone else, which would
// mark the entries contended for good (copied out; under TinyLFU, hits
// sampled).
TYPED_TEST(StoreTest, APassHoldsNoEntry) {
  auto store = this->Make(0);
  constexpr int kKeys = 10;
  std::vector<const char*> stored(kKeys);
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(store->Set(absl::StrCat("k", i), "value"));
    stored[i] = store->Peek(absl::StrCat("k", i))->value.data();
  }
  int visits = 0;
  store->ForEachKeyByValue(INT64_MAX, [&](std::string_view) {
    if (visits++ > 0) return true;
    for (int i = 0; i < kKeys; ++i) {  // hits while the pass is under way
      EXPECT_TRUE(store->Get(absl::StrCat("k", i)));
    }
    return true;
  });
  EXPECT_EQ(visits, kKeys);
  // Every key still hands out the entry's own bytes, uncopied.
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ(store->Get(absl::StrCat("k", i))->data(), stored[i]) << i;
  }
}

// ForEachByValue reads each value when its key's turn comes: what is gone
// by then is skipped, what was replaced is visited with its new value.
TYPED_TEST(StoreTest, ForEachByValueReadsEachValueInItsTurn) {
  auto store = this->Make(0);
  constexpr int kKeys = 10;
  for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(store->Set(absl::StrCat("k", i), "old"));
  std::string first;
  std::set<std::string> seen;
  store->ForEachByValue(INT64_MAX, [&](std::string_view key, const ExpiringValue& v) {
    seen.emplace(key);
    if (first.empty()) {
      first = key;
      EXPECT_EQ(v.value, "old");
      for (int i = 0; i < kKeys; ++i) {
        const std::string k = absl::StrCat("k", i);
        if (k == first) continue;
        if (i % 2 == 0) {
          store->Remove(k);
        } else {
          EXPECT_TRUE(store->Set(k, "new"));
        }
      }
    } else {
      EXPECT_EQ(v.value, "new") << key;
    }
    return true;
  });
  std::set<std::string> expected = {first};
  for (int i = 1; i < kKeys; i += 2) expected.insert(absl::StrCat("k", i));
  EXPECT_EQ(seen, expected);
}

TYPED_TEST(StoreTest, HitsAreCountedOnEitherPath) {
  auto store = this->Make(0);
  ASSERT_TRUE(store->Set("small", "v"));
  ASSERT_TRUE(store->Set("large", std::string(internal::kMaxCopiedValue + 1, 'v')));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store->Get("small"));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store->GetWithExpiry("large"));
  EXPECT_FALSE(store->Get("absent"));
  const StoreStats s = store->Stats();
  EXPECT_EQ(s.hits, 8);
  EXPECT_EQ(s.misses, 1);
}

// ---- LRU ----

TEST(LruStoreTest, EvictsTheLeastRecentlyUsed) {
  std::vector<std::string> evicted;
  auto store = NewStore({.policy = StorePolicy::kLru,
                         .capacity_bytes = 30,
                         .shards = 1,
                         .on_removal = [&](std::string_view key, const ByteView&, RemovalReason) {
                           evicted.emplace_back(key);
                         }});
  ASSERT_TRUE(store->Set("a", Value9('a')));
  ASSERT_TRUE(store->Set("b", Value9('b')));
  ASSERT_TRUE(store->Set("c", Value9('c')));
  ASSERT_TRUE(store->Get("a"));               // marks a: it goes back to the head instead of out
  ASSERT_TRUE(store->Set("d", Value9('d')));  // evicts b
  ASSERT_TRUE(store->Set("e", Value9('e')));  // evicts c
  EXPECT_THAT(evicted, ElementsAre("b", "c"));
  EXPECT_TRUE(store->Get("a"));
  EXPECT_EQ(store->Bytes(), 30);
}

TEST(LruStoreTest, APeekDoesNotSaveAnEntryFromEviction) {
  std::vector<std::string> evicted;
  auto store = NewStore({.policy = StorePolicy::kLru,
                         .capacity_bytes = 30,
                         .shards = 1,
                         .on_removal = [&](std::string_view key, const ByteView&, RemovalReason) {
                           evicted.emplace_back(key);
                         }});
  ASSERT_TRUE(store->Set("a", Value9('a')));
  ASSERT_TRUE(store->Set("b", Value9('b')));
  ASSERT_TRUE(store->Set("c", Value9('c')));
  ASSERT_TRUE(store->Peek("a"));
  ASSERT_TRUE(store->Set("d", Value9('d')));
  EXPECT_THAT(evicted, ElementsAre("a"));
}

// CLOCK's bound: when every entry was hit, one eviction gives at most
// LruList::kMaxSecondChances of them a second chance, then evicts the tail.
TEST(LruStoreTest, AnEvictionAfterEveryEntryWasHitDoesBoundedWork) {
  std::vector<std::string> evicted;
  auto store = NewStore({.policy = StorePolicy::kLru,
                         .capacity_bytes = 100 * 10,
                         .shards = 1,
                         .on_removal = [&](std::string_view key, const ByteView&, RemovalReason) {
                           evicted.emplace_back(key);
                         }});
  auto key = [](int i) { return std::string{char('0' + i / 10), char('0' + i % 10)}; };
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(store->Set(key(i), "12345678"));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(store->Get(key(i)));
  ASSERT_TRUE(store->Set("new", Value9('n').substr(2)));  // 3 + 7 bytes
  // The 32 oldest went back to the head; the 33rd went, hit or not.
  EXPECT_THAT(evicted, ElementsAre(key(32)));
  ASSERT_TRUE(store->Set("new2", Value9('n').substr(3)));
  // The next 32 (33 to 64) go back too, and 65 goes.
  EXPECT_THAT(evicted, ElementsAre(key(32), key(65)));
  EXPECT_TRUE(store->Get(key(0)));
}

TEST(LruStoreTest, SplitsCapacityEvenlyAcrossShards) {
  auto store = NewStore({.policy = StorePolicy::kLru, .capacity_bytes = 4000, .shards = 4});
  for (int i = 0; i < 4000; ++i) ASSERT_TRUE(store->Set(std::to_string(100000 + i), "vvvv"));
  // 4 shards of 1000 bytes, 10-byte entries: each shard ends full.
  EXPECT_EQ(store->Bytes(), 4000);
  EXPECT_EQ(store->Len(), 400);
}

// ---- LRU-2 ----

std::unique_ptr<Store> MakeLru2(int64_t capacity, double history_fraction,
                                std::vector<std::string>* evicted = nullptr) {
  return NewStore(
      {.policy = StorePolicy::kLru2,
       .capacity_bytes = capacity,
       .shards = 1,
       .lru2_history_fraction = history_fraction,
       .on_removal = [evicted](std::string_view key, const ByteView&, RemovalReason reason) {
         if (evicted != nullptr && reason == RemovalReason::kEvicted) {
           evicted->emplace_back(key);
         }
       }});
}

TEST(Lru2StoreTest, KeysSeenOnceLiveInAHistoryOfAQuarterOfTheBytes) {
  std::vector<std::string> evicted;
  auto store = MakeLru2(100, 0.25, &evicted);  // history 25 bytes: two 10-byte entries
  ASSERT_TRUE(store->Set("a", Value9('a')));
  ASSERT_TRUE(store->Set("b", Value9('b')));
  ASSERT_TRUE(store->Set("c", Value9('c')));
  EXPECT_THAT(evicted, ElementsAre("a"));
  EXPECT_EQ(store->Bytes(), 20);
}

TEST(Lru2StoreTest, SecondAccessPromotesAndSurvivesAScan) {
  std::vector<std::string> evicted;
  auto store = MakeLru2(100, 0.25, &evicted);
  ASSERT_TRUE(store->Set("hot", Value9('h')));
  ASSERT_TRUE(store->Get("hot"));  // second access: into main
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(store->Set(std::to_string(i % 10), Value9('s')));
  // The scan churned only the history; a plain LRU of 100 bytes would have
  // lost "hot" after ten new keys.
  EXPECT_TRUE(store->Get("hot"));
  EXPECT_THAT(evicted, ::testing::Not(::testing::Contains("hot")));
}

TEST(Lru2StoreTest, SettingAPresentKeyIsASecondAccess) {
  auto store = MakeLru2(100, 0.25);
  ASSERT_TRUE(store->Set("k", Value9('1')));
  ASSERT_TRUE(store->Set("k", Value9('2')));  // promoted to main with the new value
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(store->Set(std::to_string(i), Value9('s')));
  ASSERT_TRUE(store->Get("k"));
  EXPECT_EQ(store->Get("k")->view(), Value9('2'));
}

TEST(Lru2StoreTest, MainEvictsItsLeastRecentlyUsed) {
  std::vector<std::string> evicted;
  auto store = MakeLru2(40, 0.25, &evicted);  // history 10 bytes, main 30
  for (char c : std::string("abcd")) {
    ASSERT_TRUE(store->Set(std::string(1, c), Value9(c)));
    ASSERT_TRUE(store->Get(std::string(1, c)));  // promote each
  }
  // Main holds three: promoting d evicted a, the least recently used.
  EXPECT_THAT(evicted, ElementsAre("a"));
  ASSERT_TRUE(store->Get("b"));
  ASSERT_TRUE(store->Set("e", Value9('e')));
  ASSERT_TRUE(store->Get("e"));  // evicts c, not the just-used (marked) b
  EXPECT_THAT(evicted, ElementsAre("a", "c"));
}

TEST(Lru2StoreTest, HistoryFractionIsAParameter) {
  std::vector<std::string> evicted;
  auto store = MakeLru2(100, 0.5, &evicted);  // history 50 bytes: five entries
  for (char c : std::string("abcde")) ASSERT_TRUE(store->Set(std::string(1, c), Value9(c)));
  EXPECT_TRUE(evicted.empty());
  ASSERT_TRUE(store->Set("f", Value9('f')));
  EXPECT_THAT(evicted, ElementsAre("a"));
}

TEST(Lru2StoreTest, AHitInHistoryCountsAsAHit) {
  auto store = MakeLru2(100, 0.25);
  ASSERT_TRUE(store->Set("k", "v"));
  ASSERT_TRUE(store->Get("k"));
  EXPECT_EQ(store->Stats().hits, 1);
}

TEST(StorePolicyTest, ParsesNames) {
  EXPECT_EQ(ParseStorePolicy("lru"), StorePolicy::kLru);
  EXPECT_EQ(ParseStorePolicy("lru2"), StorePolicy::kLru2);
  EXPECT_EQ(ParseStorePolicy("tinylfu"), StorePolicy::kTinyLfu);
  EXPECT_EQ(StorePolicyName(StorePolicy::kTinyLfu), "tinylfu");
  EXPECT_EQ(ParseStorePolicy("LRU"), std::nullopt);
  EXPECT_EQ(StorePolicyName(StorePolicy::kLru2), "lru2");
}

}  // namespace
}  // namespace lcache
