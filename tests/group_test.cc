// Group: the Get path (store, singleflight, owner peer, getter), its errors
// and its counters. The peer path uses an in-process fake peer that serves
// from another Group, as a remote node would.

#include "lcache/group.h"

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "gate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/hash_ring.h"
#include "lcache/origin.h"

namespace lcache {
namespace {

using ::lcache::testing::Gate;

using ::testing::HasSubstr;

class Scores {
 public:
  Getter getter() {
    return [this](std::string_view key) -> absl::StatusOr<Loaded> {
      ++loads;
      auto it = data.find(std::string(key));
      if (it == data.end()) return KeyNotFoundError();
      return ByteView::Copy(it->second);
    };
  }

  absl::flat_hash_map<std::string, std::string> data = {
      {"Tom", "630"}, {"Jack", "589"}, {"Sam", "567"}};
  std::atomic<int> loads{0};
};

std::unique_ptr<Group> MakeGroup(GroupOptions options) {
  if (options.name.empty()) options.name = "scores";
  absl::StatusOr<std::unique_ptr<Group>> g = Group::Create(std::move(options));
  EXPECT_TRUE(g.ok()) << g.status();
  return *std::move(g);
}

// A group whose getter counts its calls in `loads`, then waits for `gate`.
std::unique_ptr<Group> MakeGatedGroup(Gate& gate, std::atomic<int>& loads) {
  return MakeGroup({.getter = [&gate, &loads](std::string_view) -> absl::StatusOr<Loaded> {
    ++loads;
    gate.Wait();
    return ByteView::Copy("value");
  }});
}

TEST(GroupTest, MissLoadsOnceThenHits) {
  Scores db;
  auto group = MakeGroup({.cache_bytes = 1 << 20, .getter = db.getter()});
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ByteView> v = group->Get("Tom");
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->view(), "630");
  }
  EXPECT_EQ(db.loads, 1);
  GroupStats s = group->Stats();
  EXPECT_EQ(s.gets, 3);
  EXPECT_EQ(s.cache_hits, 2);
  EXPECT_EQ(s.loads, 1);
  EXPECT_EQ(s.loads_deduped, 1);
  EXPECT_EQ(s.local_loads, 1);
  EXPECT_EQ(s.local_load_errs, 0);
  EXPECT_EQ(s.store.items, 1);
  EXPECT_EQ(s.store.bytes, 6);
}

TEST(GroupTest, GetIfCachedNeverLoads) {
  Scores db;
  auto group = MakeGroup({.getter = db.getter()});
  EXPECT_FALSE(group->GetIfCached("Tom").has_value());
  EXPECT_EQ(db.loads, 0);
  ASSERT_TRUE(group->Get("Tom").ok());
  std::optional<ExpiringValue> hit = group->GetIfCached("Tom");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->value.view(), "630");
  EXPECT_EQ(hit->expire_at, absl::InfiniteFuture());
  GroupStats s = group->Stats();
  EXPECT_EQ(s.gets, 2);  // the Get, and the GetIfCached hit; not the miss
  EXPECT_EQ(s.cache_hits, 1);
  EXPECT_EQ(db.loads, 1);
}

TEST(GroupTest, EmptyAndOversizedKeysAreRejectedWithoutLoading) {
  Scores db;
  auto group = MakeGroup({.getter = db.getter(), .max_key_bytes = 8});
  absl::StatusOr<ByteView> empty = group->Get("");
  EXPECT_EQ(empty.status(), absl::InvalidArgumentError("lru_cache: empty key"));
  absl::StatusOr<ByteView> big = group->Get("123456789");
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(big.status().message(), "lcache: key too long (9 bytes, max 8)");
  EXPECT_TRUE(group->Get("12345678").status().code() == absl::StatusCode::kNotFound);
  EXPECT_EQ(db.loads, 1);
  GroupStats s = group->Stats();
  EXPECT_EQ(s.gets, 3);
  EXPECT_EQ(s.loads, 1);
}

TEST(GroupTest, NotFoundCarriesTheGoTextAndIsNotCached) {
  Scores db;
  auto group = MakeGroup({.getter = db.getter()});
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<ByteView> v = group->Get("Alice");
    EXPECT_EQ(v.status(), absl::NotFoundError("lru_cache: key not found"));
  }
  EXPECT_EQ(db.loads, 2);  // errors are not cached: the key may appear later
  EXPECT_EQ(group->Stats().local_load_errs, 2);
}

TEST(GroupTest, GetterErrorPassesThrough) {
  auto group = MakeGroup({.getter = [](std::string_view) -> absl::StatusOr<Loaded> {
    return absl::UnavailableError("database is down");
  }});
  EXPECT_EQ(group->Get("k").status(), absl::UnavailableError("database is down"));
}

TEST(GroupTest, GetterExceptionBecomesAnInternalError) {
  int calls = 0;
  auto group = MakeGroup({.getter = [&](std::string_view) -> absl::StatusOr<Loaded> {
    if (++calls == 1) throw std::runtime_error("boom");
    return ByteView::Copy("ok");
  }});
  absl::StatusOr<ByteView> v = group->Get("k");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("boom"));
  // Nothing is left stuck: the next Get loads again.
  ASSERT_TRUE(group->Get("k").ok());
  EXPECT_EQ(calls, 2);
}

TEST(GroupTest, ValueIsCopiedOnceIntoTheStoreAndNotForTheCaller) {
  const char* getter_bytes = nullptr;
  auto group = MakeGroup({.getter = [&](std::string_view) -> absl::StatusOr<Loaded> {
    std::string s(1000, 'v');
    getter_bytes = s.data();
    return ByteView::Adopt(std::move(s));
  }});
  ByteView first = *group->Get("k");
  EXPECT_EQ(first.data(), getter_bytes);  // the caller gets the getter's own bytes
  ByteView hit1 = *group->Get("k");
  ByteView hit2 = *group->Get("k");
  EXPECT_NE(hit1.data(), getter_bytes);  // the one copy, inside the store's entry
  EXPECT_EQ(hit1.data(), hit2.data());   // shared by every hit
  EXPECT_EQ(hit1, first);
}

TEST(GroupTest, DefaultTtlExpiresEntries) {
  Scores db;
  ManualClock clock;
  auto group = MakeGroup({.getter = db.getter(), .default_ttl = absl::Seconds(5), .clock = &clock});
  ASSERT_TRUE(group->Get("Tom").ok());
  clock.Advance(absl::Seconds(4));
  ASSERT_TRUE(group->Get("Tom").ok());
  EXPECT_EQ(db.loads, 1);
  clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(group->Get("Tom").ok());
  EXPECT_EQ(db.loads, 2);
  GroupStats s = group->Stats();
  EXPECT_EQ(s.store.expirations, 1);
  EXPECT_EQ(s.cache_hits, 1);
}

TEST(GroupTest, GetterTtlOverridesTheDefault) {
  ManualClock clock;
  int loads = 0;
  auto group = MakeGroup({.getter = [&](std::string_view key) -> absl::StatusOr<Loaded> {
                            ++loads;
                            if (key == "short")
                              return Loaded(ByteView::Copy("s"), absl::Seconds(1));
                            return Loaded(ByteView::Copy("f"), absl::InfiniteDuration());
                          },
                          .default_ttl = absl::Seconds(10),
                          .clock = &clock});
  ASSERT_TRUE(group->Get("short").ok());
  ASSERT_TRUE(group->Get("forever").ok());
  clock.Advance(absl::Hours(1));
  ASSERT_TRUE(group->Get("short").ok());
  ASSERT_TRUE(group->Get("forever").ok());
  EXPECT_EQ(loads, 3);  // only "short" was loaded again
}

TEST(GroupTest, AnUncacheableValueIsServedToItsCallersAndNotKept) {
  std::atomic<int> loads = 0;
  auto group = MakeGroup({.getter = [&](std::string_view) -> absl::StatusOr<Loaded> {
    ++loads;
    Loaded loaded(ByteView::Copy("fresh"));
    loaded.cacheable = false;
    return loaded;
  }});
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ByteView> v = group->Get("k");
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->view(), "fresh");
  }
  EXPECT_EQ(loads, 3);
  EXPECT_EQ(group->store().Stats().items, 0);
  EXPECT_FALSE(group->GetIfCached("k").has_value());
}

// An Origin in place of a getter: loads go through it, and the group shows it.
class CountingOrigin final : public Origin {
 public:
  absl::StatusOr<Loaded> Load(std::string_view key) override {
    ++loads;
    if (key == "missing") return KeyNotFoundError();
    return ByteView::Copy("from-origin");
  }
  std::string_view kind() const override { return "test"; }
  const std::string& endpoint() const override { return endpoint_; }
  OriginStats stats() const override {
    OriginStats s;
    s.requests = loads;
    return s;
  }
  std::atomic<int> loads = 0;

 private:
  const std::string endpoint_ = "test://";
};

TEST(GroupTest, AnOriginLoadsInPlaceOfAGetterNeverBesideOne) {
  auto origin = std::make_shared<CountingOrigin>();
  auto group = MakeGroup({.origin = origin});
  EXPECT_EQ(group->origin(), origin.get());
  EXPECT_EQ(group->Get("k")->view(), "from-origin");
  EXPECT_EQ(group->Get("k")->view(), "from-origin");
  EXPECT_TRUE(absl::IsNotFound(group->Get("missing").status()));
  EXPECT_EQ(origin->loads, 2);

  Scores scores;
  absl::StatusOr<std::unique_ptr<Group>> both =
      Group::Create({.name = "g", .getter = scores.getter(), .origin = origin});
  EXPECT_TRUE(absl::IsInvalidArgument(both.status()));
  EXPECT_THAT(both.status().message(), HasSubstr("has both"));
  absl::StatusOr<std::unique_ptr<Group>> neither = Group::Create({.name = "g"});
  EXPECT_THAT(neither.status().message(), HasSubstr("needs a getter or an origin"));
  EXPECT_EQ(MakeGroup({.getter = scores.getter()})->origin(), nullptr);
}

// Latencies come from the group's clock: a getter that moves a ManualClock
// by 3 ms shows up in the 5 ms buckets; hits are not timed.
TEST(GroupTest, MissesAndGetterCallsAreTimedHitsAreNot) {
  ManualClock clock;
  auto group = MakeGroup({.getter = [&](std::string_view key) -> absl::StatusOr<Loaded> {
                            clock.Advance(absl::Milliseconds(3));
                            if (key == "missing") return KeyNotFoundError();
                            return ByteView::Copy("v");
                          },
                          .clock = &clock});
  ASSERT_TRUE(group->Get("k").ok());
  ASSERT_TRUE(group->Get("k").ok());  // a hit
  ASSERT_TRUE(group->GetIfCached("k").has_value());
  EXPECT_FALSE(group->Get("missing").ok());
  EXPECT_FALSE(group->Get("").ok());  // rejected before the store
  const GroupStats s = group->Stats();
  const size_t b5ms = LatencyHistogram::BucketOf(absl::Milliseconds(5));
  EXPECT_EQ(s.get_miss_latency.count, 2);
  EXPECT_EQ(s.get_miss_latency.counts[b5ms], 2);
  EXPECT_EQ(s.get_miss_latency.sum, absl::Milliseconds(6));
  EXPECT_EQ(s.getter_latency.count, 2);
  EXPECT_EQ(s.getter_latency.counts[b5ms], 2);
  EXPECT_EQ(s.peer_latency.count, 0);
}

TEST(GroupTest, PeerCallsAreTimedAnsweredOrFailed) {
  ManualClock clock;
  class SlowPeer : public PeerGetter {
   public:
    explicit SlowPeer(ManualClock* clock) : clock_(clock) {}
    absl::StatusOr<PeerValue> Get(std::string_view, std::string_view key) override {
      clock_->Advance(absl::Milliseconds(40));
      if (key == "down") return absl::UnavailableError("peer down");
      return ByteView::Copy("remote");
    }

   private:
    ManualClock* clock_;
  };
  class AlwaysPeer : public PeerPicker {
   public:
    explicit AlwaysPeer(std::shared_ptr<PeerGetter> p) : p_(std::move(p)) {}
    std::shared_ptr<PeerGetter> PickPeer(std::string_view) override { return p_; }

   private:
    std::shared_ptr<PeerGetter> p_;
  } picker(std::make_shared<SlowPeer>(&clock));
  Scores db;
  db.data["down"] = "local";
  auto group = MakeGroup({.getter = db.getter(), .peers = &picker, .clock = &clock});
  EXPECT_EQ(group->Get("up")->view(), "remote");
  EXPECT_EQ(group->Get("down")->view(), "local");  // fell back to the getter
  const GroupStats s = group->Stats();
  EXPECT_EQ(s.peer_latency.count, 2);
  EXPECT_EQ(s.peer_latency.counts[LatencyHistogram::BucketOf(absl::Milliseconds(50))], 2);
  EXPECT_EQ(s.getter_latency.count, 1);
  EXPECT_EQ(s.get_miss_latency.count, 2);
  EXPECT_EQ(s.get_miss_latency.sum, absl::Milliseconds(80));
}

TEST(GroupTest, ConcurrentMissesOfOneKeyLoadOnce) {
  constexpr int kCallers = 32;
  Gate gate;
  std::atomic<int> loads{0};
  auto group = MakeGatedGroup(gate, loads);
  std::vector<std::future<absl::StatusOr<ByteView>>> results;
  for (int i = 0; i < kCallers; ++i) {
    results.push_back(std::async(std::launch::async, [&] { return group->Get("k"); }));
  }
  // Wait until the load is running, then let it finish. Callers that
  // arrive later either join the flight or hit the store: never a 2nd load.
  for (int i = 0; i < 1000 && loads == 0; ++i) std::this_thread::yield();
  gate.Open();
  for (auto& r : results) {
    ASSERT_EQ(r.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    absl::StatusOr<ByteView> v = r.get();
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->view(), "value");
  }
  EXPECT_EQ(loads, 1);
  GroupStats s = group->Stats();
  EXPECT_EQ(s.gets, kCallers);
  EXPECT_EQ(s.cache_hits + s.loads, kCallers);
  EXPECT_EQ(s.loads_deduped, 1);
}

// A key's owner loads it once whether its requests come from clients
// (kAnywhere) or were forwarded by peers (kLocalOnly).
TEST(GroupTest, ForwardedAndClientRequestsShareOneLoad) {
  Gate gate;
  std::atomic<int> loads{0};
  auto group = MakeGatedGroup(gate, loads);
  auto client = std::async(std::launch::async, [&] { return group->Get("k"); });
  for (int i = 0; i < 100000 && loads == 0; ++i) std::this_thread::yield();
  ASSERT_EQ(loads, 1);
  auto forwarded =
      std::async(std::launch::async, [&] { return group->Get("k", LoadScope::kLocalOnly); });
  // A second getter call would show within this bounded wait; one that
  // joined the flight shows nothing, so the wait cannot make the test pass.
  for (int i = 0; i < 20000 && loads == 1; ++i) std::this_thread::yield();
  gate.Open();
  ASSERT_EQ(client.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  ASSERT_EQ(forwarded.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(client.get()->view(), "value");
  EXPECT_EQ(forwarded.get()->view(), "value");
  EXPECT_EQ(loads, 1);
  EXPECT_EQ(group->Stats().loads_deduped, 1);
}

// A peer that serves from a Group of its own, in process.
class FakePeer : public PeerGetter {
 public:
  explicit FakePeer(Group* remote) : remote_(remote) {}
  absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) override {
    ++calls;
    if (fail) return absl::UnavailableError("peer down");
    EXPECT_EQ(group, remote_->name());
    remote_->CountServerRequest();
    return remote_->Get(key, LoadScope::kLocalOnly);
  }
  std::atomic<int> calls{0};
  std::atomic<bool> fail{false};

 private:
  Group* remote_;
};

// Routes by a two-node ring: "self" is this node, "peer" the fake.
class TwoNodePicker : public PeerPicker {
 public:
  explicit TwoNodePicker(std::shared_ptr<PeerGetter> peer) : peer_(std::move(peer)) {}
  std::shared_ptr<PeerGetter> PickPeer(std::string_view key) override {
    return ring_.Owner(key) == "peer" ? peer_ : nullptr;
  }
  bool OwnedByPeer(std::string_view key) const { return ring_.Owner(key) == "peer"; }

 private:
  HashRing ring_{{"self", "peer"}};
  std::shared_ptr<PeerGetter> peer_;
};

class GroupPeerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    remote_ = MakeGroup({.getter = remote_db_.getter()});
    peer_ = std::make_shared<FakePeer>(remote_.get());
    picker_ = std::make_unique<TwoNodePicker>(peer_);
    for (int i = 0; peer_key_.empty() || local_key_.empty(); ++i) {
      std::string key = "key-" + std::to_string(i);
      (picker_->OwnedByPeer(key) ? peer_key_ : local_key_) = key;
      remote_db_.data[key] = "remote-" + key;
      local_db_.data[key] = "local-" + key;
    }
    group_ = MakeGroup({.getter = local_db_.getter(), .peers = picker_.get()});
  }

  Scores local_db_, remote_db_;
  std::unique_ptr<Group> remote_, group_;
  std::shared_ptr<FakePeer> peer_;
  std::unique_ptr<TwoNodePicker> picker_;
  std::string peer_key_, local_key_;
};

TEST_F(GroupPeerTest, KeysOwnedByAPeerAreLoadedFromIt) {
  EXPECT_EQ(group_->Get(peer_key_)->view(), "remote-" + peer_key_);
  EXPECT_EQ(group_->Get(local_key_)->view(), "local-" + local_key_);
  EXPECT_EQ(local_db_.loads, 1);
  EXPECT_EQ(remote_db_.loads, 1);
  GroupStats s = group_->Stats();
  EXPECT_EQ(s.peer_loads, 1);
  EXPECT_EQ(s.local_loads, 1);
  EXPECT_EQ(s.store.items, 1);  // the owner keeps the peer's key, not us
  EXPECT_EQ(remote_->Stats().server_requests, 1);
}

TEST_F(GroupPeerTest, PeerFailureFallsBackToALocalLoad) {
  peer_->fail = true;
  EXPECT_EQ(group_->Get(peer_key_)->view(), "local-" + peer_key_);
  GroupStats s = group_->Stats();
  EXPECT_EQ(s.peer_errors, 1);
  EXPECT_EQ(s.local_loads, 1);
}

TEST_F(GroupPeerTest, PeerNotFoundIsFinal) {
  remote_db_.data.erase(peer_key_);
  EXPECT_EQ(group_->Get(peer_key_).status(), KeyNotFoundError());
  EXPECT_EQ(local_db_.loads, 0);
  EXPECT_EQ(group_->Stats().peer_errors, 0);
}

TEST_F(GroupPeerTest, LocalOnlyScopeNeverAsksAPeer) {
  EXPECT_EQ(group_->Get(peer_key_, LoadScope::kLocalOnly)->view(), "local-" + peer_key_);
  EXPECT_EQ(peer_->calls, 0);
}

TEST(GroupCreateTest, RejectsBadOptions) {
  Scores db;
  EXPECT_EQ(Group::Create({.name = "", .getter = db.getter()}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Group::Create({.name = "g"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Group::Create({.name = "g", .cache_bytes = -1, .getter = db.getter()}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Group::Create({.name = "g", .getter = db.getter(), .lru2_history_fraction = 1.5})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Group::Create({.name = "g", .getter = db.getter(), .max_key_bytes = 1 << 20}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Group::Create({.name = "g", .getter = db.getter(), .tinylfu_window_fraction = 1.5})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// TinyLFU's tuning reaches the group's store: the same accesses give the
// hits of a store built with those options, not the default's.
TEST(GroupCreateTest, PassesTinyLfuTuningToItsStore) {
  Scores db;
  auto tuned = Group::Create({.name = "g",
                              .cache_bytes = 64 << 10,
                              .getter = db.getter(),
                              .policy = StorePolicy::kTinyLfu,
                              .store_shards = 1,
                              .tinylfu_window_fraction = 0.5,
                              .tinylfu_adaptive_window = false});
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  auto same = NewStore({.policy = StorePolicy::kTinyLfu,
                        .capacity_bytes = 64 << 10,
                        .shards = 1,
                        .tinylfu_window_fraction = 0.5,
                        .tinylfu_adaptive_window = false});
  auto default_tuning =
      NewStore({.policy = StorePolicy::kTinyLfu, .capacity_bytes = 64 << 10, .shards = 1});
  const std::string value(100, 'v');
  uint64_t x = 1;
  for (int i = 0; i < 20000; ++i) {
    x = x * 6364136223846793005u + 1442695040888963407u;  // a fixed pseudo-random walk
    const std::string key = absl::StrCat("k", (x >> 33) % ((i / 1000) % 2 ? 3000 : 400));
    for (Store* s : {&(*tuned)->store(), same.get(), default_tuning.get()}) {
      if (!s->Get(key)) s->Set(key, value);
    }
  }
  EXPECT_EQ((*tuned)->store().Stats().hits, same->Stats().hits);
  EXPECT_NE(same->Stats().hits, default_tuning->Stats().hits);
}

}  // namespace
}  // namespace lcache
