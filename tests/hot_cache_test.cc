// The hot cache: which values fetched from owner peers a Group keeps
// (HotAdmission), and that a kept copy is served locally, never outlives the
// owner's copy, and leaves when it should. The owner is another Group in
// process behind a fake PeerGetter that answers as the real server does: the
// value and the owner's remaining time to live, rounded down to milliseconds.

#include "core/hot_admission.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "lcache/group.h"

namespace lcache {
namespace {

using internal::HotAdmission;

// A hot cache of 8,000 bytes, 7,000 of them held: no room left for keys
// fetched once.
constexpr int64_t kCapacity = 8000;
constexpr int64_t kNearlyFull = 7000;

TEST(HotAdmissionTest, FrequencyKeepsAKeyOnItsSecondFetch) {
  HotAdmission admission(HotPromotion::kFrequency, 1024, kCapacity);
  admission.Kept(kNearlyFull);
  EXPECT_FALSE(admission.Admit("a"));
  EXPECT_FALSE(admission.Admit("b"));
  EXPECT_TRUE(admission.Admit("a"));
  EXPECT_TRUE(admission.Admit("a"));
  EXPECT_TRUE(admission.Admit("b"));
}

TEST(HotAdmissionTest, FrequencyNeverKeepsOneHitWonders) {
  HotAdmission admission(HotPromotion::kFrequency, 1 << 16, kCapacity);
  admission.Kept(kNearlyFull);
  int kept = 0;
  for (int i = 0; i < 10000; ++i) kept += admission.Admit("once-" + std::to_string(i));
  // A count-min sketch may over-count a key that collides in all four rows;
  // at 10k keys in a sketch for 64k, that is (almost) never.
  EXPECT_LE(kept, 10);
}

TEST(HotAdmissionTest, FrequencyKeepsEveryFetchWhileTheCacheHasRoom) {
  HotAdmission admission(HotPromotion::kFrequency, 1024, kCapacity);
  EXPECT_EQ(admission.warm_up_bytes(), kNearlyFull);
  EXPECT_TRUE(admission.Admit("a"));
  admission.Kept(kNearlyFull - 1);
  EXPECT_TRUE(admission.Admit("b"));
  admission.Kept(1);  // 7/8 full: first fetches are no longer kept
  EXPECT_FALSE(admission.Admit("c"));
  EXPECT_TRUE(admission.Admit("c"));
  admission.Left(100);  // evictions, expiries or removals made room again
  EXPECT_TRUE(admission.Admit("d"));
}

// The tracked fill is reset from the store's own count once per
// kResyncEvery fetches, so a drift (bytes that left uncounted) ends.
TEST(HotAdmissionTest, TheFillIsResyncedFromTheStorePeriodically) {
  HotAdmission admission(HotPromotion::kFrequency, 1024, kCapacity);
  admission.Kept(kNearlyFull);  // say, copies that expired and were never swept
  int due = 0;
  for (int i = 0; i < 2 * HotAdmission::kResyncEvery; ++i) due += admission.ResyncDue();
  EXPECT_EQ(due, 2);
  EXPECT_FALSE(admission.Admit("x"));
  admission.Resync(100);  // what the store holds
  EXPECT_TRUE(admission.Admit("y"));
}

TEST(HotAdmissionTest, RandomKeepsAboutOneInTen) {
  HotAdmission admission(HotPromotion::kRandom, 1024, kCapacity);
  int kept = 0;
  for (int i = 0; i < 20000; ++i) kept += admission.Admit("k");
  // Binomial(20000, 0.1): mean 2000, sd 42; the bounds are 7 sd away.
  EXPECT_GT(kept, 1700);
  EXPECT_LT(kept, 2300);
}

class Db {
 public:
  Getter getter() {
    return [this](std::string_view key) -> absl::StatusOr<Loaded> {
      ++loads;
      Loaded loaded(ByteView::Copy("value-of-" + std::string(key)));
      loaded.cacheable = !key.starts_with("nostore");  // as HTTP's Cache-Control: no-store
      return loaded;
    };
  }
  std::atomic<int> loads{0};
};

// Answers from the owner's group like PeerService does: its remaining TTL,
// in whole milliseconds, rounded down; none when the entry does not expire.
class OwnerPeer : public PeerGetter {
 public:
  OwnerPeer(Group* owner, bool send_ttl) : owner_(owner), send_ttl_(send_ttl) {}
  absl::StatusOr<PeerValue> Get(std::string_view, std::string_view key) override {
    ++calls;
    absl::StatusOr<ExpiringValue> v = owner_->GetWithExpiry(key, LoadScope::kLocalOnly);
    if (!v.ok()) return v.status();
    if (!send_ttl_ || v->expire_at == absl::InfiniteFuture()) return v->value;
    const int64_t ms = absl::ToInt64Milliseconds(v->expire_at - owner_->clock().Now());
    return PeerValue(v->value, absl::Milliseconds(ms));
  }
  std::atomic<int> calls{0};

 private:
  Group* const owner_;
  const bool send_ttl_;
};

// Every key is the peer's.
class Picker : public PeerPicker {
 public:
  explicit Picker(std::shared_ptr<PeerGetter> peer) : peer_(std::move(peer)) {}
  std::shared_ptr<PeerGetter> PickPeer(std::string_view) override { return peer_; }

 private:
  std::shared_ptr<PeerGetter> peer_;
};

struct ClusterOptions {
  int64_t hot_cache_bytes = -1;
  HotPromotion promotion = HotPromotion::kFrequency;
  absl::Duration owner_ttl = absl::ZeroDuration();
  absl::Duration local_ttl = absl::ZeroDuration();
  bool owner_sends_ttl = true;  // false: a Go owner
  absl::Duration hot_max_age = absl::Seconds(60);
};

// This node (`group`) and the owner of every key (`owner`), on one clock.
class HotCacheTest : public ::testing::Test {
 protected:
  void Start(ClusterOptions o = {}) {
    owner_ = *Group::Create({.name = "g",
                             .cache_bytes = 1 << 20,
                             .getter = owner_db_.getter(),
                             .default_ttl = o.owner_ttl,
                             .clock = &clock_});
    peer_ = std::make_shared<OwnerPeer>(owner_.get(), o.owner_sends_ttl);
    picker_ = std::make_unique<Picker>(peer_);
    group_ = *Group::Create({.name = "g",
                             .cache_bytes = 1 << 20,
                             .getter = local_db_.getter(),
                             .default_ttl = o.local_ttl,
                             .peers = picker_.get(),
                             .hot_cache_bytes = o.hot_cache_bytes,
                             .hot_promotion = o.promotion,
                             .hot_max_age = o.hot_max_age,
                             .clock = &clock_});
  }

  std::string Get(const std::string& key) {
    absl::StatusOr<ByteView> v = group_->Get(key);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? v->ToString() : "";
  }

  ManualClock clock_;
  Db owner_db_, local_db_;
  std::unique_ptr<Group> owner_, group_;
  std::shared_ptr<OwnerPeer> peer_;
  std::unique_ptr<Picker> picker_;
};

// A value its origin says not to keep: the owner answers with ttl 0, and
// neither it nor the asking node keeps a copy, however often it is asked.
TEST_F(HotCacheTest, AnUncacheableValueIsKeptNeitherByTheOwnerNorHot) {
  Start({.promotion = HotPromotion::kFrequency});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Get("nostore-k"), "value-of-nostore-k");
  EXPECT_EQ(peer_->calls, 5);
  EXPECT_EQ(owner_db_.loads, 5);
  EXPECT_EQ(group_->Stats().hot_keeps, 0);
  EXPECT_EQ(owner_->store().Stats().items, 0);
  EXPECT_EQ(group_->hot_store()->Stats().items, 0);
}

TEST_F(HotCacheTest, WhileTheHotCacheHasRoomAKeyFetchedOnceIsThenServedLocally) {
  Start();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Get("k"), "value-of-k");
  EXPECT_EQ(peer_->calls, 1);  // kept on the first fetch: it displaced nothing
  EXPECT_EQ(owner_db_.loads, 1);
  EXPECT_EQ(local_db_.loads, 0);
  const GroupStats s = group_->Stats();
  EXPECT_EQ(s.hot_keeps, 1);
  EXPECT_EQ(s.hot_hits, 4);
  EXPECT_EQ(s.cache_hits, 4);
  EXPECT_EQ(s.peer_loads, 1);
  EXPECT_EQ(s.gets, 5);
  EXPECT_EQ(s.store.items, 0);  // the owner keeps the value; we keep a hot copy
  EXPECT_EQ(s.hot_store.items, 1);
  EXPECT_EQ(s.hot_store.capacity_bytes, (1 << 20) / 8);
  // Transports answer hits through GetIfCached: hot copies included.
  ASSERT_TRUE(group_->GetIfCached("k").has_value());
}

// Once 7/8 of the hot cache is taken, a key fetched once no longer displaces
// anything; its second fetch keeps it.
TEST_F(HotCacheTest, OnceTheHotCacheIsNearlyFullAKeyIsKeptOnItsSecondFetch) {
  Start({.hot_cache_bytes = 4096});
  int filled = 0;
  while (group_->Stats().hot_store.bytes < 4096 / 8 * 7 && filled < 1000) {
    Get("fill-" + std::to_string(filled++));
  }
  EXPECT_EQ(group_->Stats().hot_keeps, filled);  // every first fetch kept until then
  const int calls = peer_->calls;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Get("k"), "value-of-k");
  EXPECT_EQ(peer_->calls, calls + 2);
  const GroupStats s = group_->Stats();
  EXPECT_EQ(s.hot_keeps, filled + 1);
  EXPECT_EQ(s.hot_hits, 3);
  // Keys fetched once more after that are not kept either.
  for (int i = 0; i < 20; ++i) Get("once-" + std::to_string(i));
  EXPECT_EQ(group_->Stats().hot_keeps, filled + 1);
  EXPECT_TRUE(group_->GetIfCached("k").has_value());
  // Copies that leave (here: invalidated) make room again: first fetches
  // are kept until the cache is 7/8 full once more.
  for (int i = 0; i < filled; ++i) group_->Invalidate("fill-" + std::to_string(i));
  Get("after");
  EXPECT_EQ(group_->Stats().hot_keeps, filled + 2);
  EXPECT_TRUE(group_->GetIfCached("after").has_value());
}

TEST_F(HotCacheTest, NoHotCacheMeansEveryMissCrossesTheNetwork) {
  Start({.hot_cache_bytes = 0});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Get("k"), "value-of-k");
  EXPECT_EQ(peer_->calls, 5);
  EXPECT_EQ(group_->Stats().hot_store.capacity_bytes, 0);
  EXPECT_EQ(group_->hot_store(), nullptr);
}

TEST_F(HotCacheTest, RandomPromotionKeepsAHotKeyEventually) {
  Start({.promotion = HotPromotion::kRandom});
  int fetches = 0;
  while (group_->Stats().hot_keeps == 0 && fetches < 400) {
    EXPECT_EQ(Get("k"), "value-of-k");
    ++fetches;
  }
  // P(not kept within 400 fetches at 1 in 10) = 0.9^400, about 5e-19.
  EXPECT_EQ(group_->Stats().hot_keeps, 1);
  const int calls = peer_->calls;
  EXPECT_EQ(Get("k"), "value-of-k");
  EXPECT_EQ(peer_->calls, calls);
}

TEST_F(HotCacheTest, AHotCopyNeverOutlivesTheOwnersCopy) {
  Start({.owner_ttl = absl::Seconds(10)});
  ASSERT_TRUE(owner_->Get("k").ok());  // the owner loads k, to expire at t0 + 10 s
  clock_.Advance(absl::Seconds(3));
  Get("k");  // kept, with what remains of the owner's 10 s
  const absl::Time owner_expiry = owner_->GetIfCached("k")->expire_at;
  std::optional<ExpiringValue> hot = group_->GetIfCached("k");
  ASSERT_TRUE(hot.has_value());
  EXPECT_LE(hot->expire_at, owner_expiry);
  EXPECT_GT(hot->expire_at, owner_expiry - absl::Milliseconds(2));

  clock_.Advance(absl::Seconds(7) - absl::Milliseconds(1));
  EXPECT_EQ(Get("k"), "value-of-k");
  EXPECT_EQ(peer_->calls, 1);  // still hot, 1 ms before the owner's expiry
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(Get("k"), "value-of-k");
  EXPECT_EQ(peer_->calls, 2);  // both copies expired together
  EXPECT_EQ(owner_db_.loads, 2);
}

TEST_F(HotCacheTest, AnAnswerAlreadyDueIsNotKept) {
  Start({.owner_ttl = absl::Seconds(1)});
  ASSERT_TRUE(owner_->Get("k").ok());
  clock_.Advance(absl::Seconds(1) - absl::Microseconds(500));  // 0.5 ms left: ttl_ms 0
  Get("k");
  EXPECT_EQ(group_->Stats().hot_keeps, 0);
  EXPECT_EQ(group_->Stats().hot_store.items, 0);
}

TEST_F(HotCacheTest, WithoutTheOwnersExpiryOurDefaultTtlBoundsTheCopy) {
  Start({.owner_ttl = absl::Seconds(60), .local_ttl = absl::Seconds(5), .owner_sends_ttl = false});
  Get("k");  // kept until now + 5 s
  EXPECT_EQ(group_->GetIfCached("k")->expire_at, clock_.Now() + absl::Seconds(5));
  clock_.Advance(absl::Seconds(5));
  Get("k");
  EXPECT_EQ(peer_->calls, 2);
}

TEST_F(HotCacheTest, ACopyLivesAtMostHotMaxAgeWhateverTheOwnerSays) {
  Start({.owner_ttl = absl::Hours(1)});
  Get("k");
  EXPECT_EQ(group_->GetIfCached("k")->expire_at, clock_.Now() + absl::Seconds(60));
  clock_.Advance(absl::Seconds(59));
  Get("k");
  EXPECT_EQ(peer_->calls, 1);
  clock_.Advance(absl::Seconds(2));
  Get("k");
  EXPECT_EQ(peer_->calls, 2);
}

TEST_F(HotCacheTest, WithoutAnyExpiryOrAgeLimitTheCopyStaysUntilEvicted) {
  Start({.owner_sends_ttl = false, .hot_max_age = absl::InfiniteDuration()});
  Get("k");
  EXPECT_EQ(group_->GetIfCached("k")->expire_at, absl::InfiniteFuture());
  clock_.Advance(absl::Hours(24 * 365));
  Get("k");
  EXPECT_EQ(peer_->calls, 1);
}

TEST_F(HotCacheTest, RemoveDropsTheHotCopy) {
  Start();
  Get("k");
  ASSERT_TRUE(group_->GetIfCached("k").has_value());
  group_->Invalidate("k");
  EXPECT_FALSE(group_->GetIfCached("k").has_value());
  Get("k");
  EXPECT_EQ(peer_->calls, 2);
  EXPECT_TRUE(group_->GetIfCached("k").has_value());  // kept again
  EXPECT_EQ(group_->Stats().hot_keeps, 2);
}

TEST_F(HotCacheTest, TheHotCacheStaysWithinItsBytes) {
  Start({.hot_cache_bytes = 4096});
  for (int i = 0; i < 400; ++i) {
    const std::string key = "key-" + std::to_string(i);
    Get(key);
    Get(key);
  }
  const GroupStats s = group_->Stats();
  EXPECT_EQ(s.hot_keeps, 400);
  EXPECT_LE(s.hot_store.bytes, 4096);
  EXPECT_GT(s.hot_store.evictions, 0);
}

// Many threads fetching, promoting, hitting and evicting hot copies at once
// (run under TSan): every answer is the owner's value, and the budget holds.
TEST_F(HotCacheTest, ConcurrentGetsSeeOnlyTheOwnersValues) {
  Start({.hot_cache_bytes = 2048});
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string key = "key-" + std::to_string((i * (t + 1)) % 97);
        absl::StatusOr<ByteView> v = group_->Get(key);
        if (!v.ok() || v->view() != "value-of-" + key) ++wrong;
        if (i % 101 == 0) group_->Invalidate(key);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(wrong, 0);
  const GroupStats s = group_->Stats();
  EXPECT_LE(s.hot_store.bytes, 2048);
  EXPECT_GT(s.hot_hits, 0);
  EXPECT_EQ(s.gets, 8000);
  EXPECT_EQ(s.cache_hits + s.loads, 8000);
}

TEST(HotCacheOptionsTest, RejectsANegativeBudgetOtherThanTheDefault) {
  Db db;
  EXPECT_EQ(
      Group::Create({.name = "g", .getter = db.getter(), .hot_cache_bytes = -2}).status().code(),
      absl::StatusCode::kInvalidArgument);
  // An unbounded store gets no hot cache by default, only when asked.
  EXPECT_EQ((*Group::Create({.name = "g", .getter = db.getter()}))->hot_store(), nullptr);
  EXPECT_NE(
      (*Group::Create({.name = "g", .getter = db.getter(), .hot_cache_bytes = 1024}))->hot_store(),
      nullptr);
}

TEST(HotPromotionTest, ParsesItsNames) {
  EXPECT_EQ(ParseHotPromotion("frequency"), HotPromotion::kFrequency);
  EXPECT_EQ(ParseHotPromotion("random"), HotPromotion::kRandom);
  EXPECT_EQ(ParseHotPromotion("lru"), std::nullopt);
}

}  // namespace
}  // namespace lcache
