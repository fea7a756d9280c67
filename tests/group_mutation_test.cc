// Group::Set, Remove and Invalidate: what they change, what they refuse, and
// the leases (KeyEpochs) that keep a load racing them from undoing them.
// Peers are in-process fakes here, to hold a call at a chosen point; the
// real transports and processes are tested in grpc_peer_test and
// cluster_test.py.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/key_epochs.h"
#include "gate.h"
#include "gtest/gtest.h"
#include "lcache/group.h"

namespace lcache {
namespace {

using testing::Gate;

// The origin: a value per key with a version the test moves.
class Origin {
 public:
  Getter getter() {
    return [this](std::string_view key) -> absl::StatusOr<Loaded> {
      ++loads;
      if (gate != nullptr) gate->Wait();
      return ByteView::Copy(
          absl::StrCat(absl::string_view(key.data(), key.size()), "@", version.load()));
    };
  }
  std::atomic<int> version{1};
  std::atomic<int> loads{0};
  Gate* gate = nullptr;  // when set, every load waits on it
};

std::string Value(const absl::StatusOr<ByteView>& v) {
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? v->ToString() : absl::StrCat("<", v.status().ToString(), ">");
}

class MutationTest : public ::testing::Test {
 protected:
  void Start(GroupOptions options = {}) {
    options.name = "g";
    if (options.cache_bytes == 0) options.cache_bytes = 1 << 20;
    options.getter = origin_.getter();
    options.clock = &clock_;
    group_ = *Group::Create(std::move(options));
  }

  ManualClock clock_;
  Origin origin_;
  std::unique_ptr<Group> group_;
};

TEST_F(MutationTest, AGetAfterSetReturnsTheValueWithoutLoading) {
  Start();
  ASSERT_EQ(Value(group_->Get("k")), "k@1");
  absl::StatusOr<MutationResult> r = group_->Set("k", "mine");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->unacknowledged.empty());
  EXPECT_EQ(Value(group_->Get("k")), "mine");
  EXPECT_EQ(origin_.loads, 1);
  EXPECT_EQ(group_->Stats().sets, 1);
}

TEST_F(MutationTest, ASetValueLivesItsTtlOrTheGroupDefault) {
  Start({.default_ttl = absl::Seconds(100)});
  ASSERT_TRUE(group_->Set("short", "v", absl::Seconds(5)).ok());
  ASSERT_TRUE(group_->Set("default", "v").ok());
  ASSERT_TRUE(group_->Set("never", "v", absl::ZeroDuration()).ok());
  EXPECT_EQ(group_->GetIfCached("short")->expire_at, clock_.Now() + absl::Seconds(5));
  EXPECT_EQ(group_->GetIfCached("default")->expire_at, clock_.Now() + absl::Seconds(100));
  EXPECT_EQ(group_->GetIfCached("never")->expire_at, absl::InfiniteFuture());
  clock_.Advance(absl::Seconds(6));
  EXPECT_EQ(Value(group_->Get("short")), "short@1");  // expired: loaded again
  EXPECT_EQ(Value(group_->Get("default")), "v");
}

TEST_F(MutationTest, RemoveMakesTheNextGetLoad) {
  Start();
  ASSERT_EQ(Value(group_->Get("k")), "k@1");
  origin_.version = 2;
  ASSERT_TRUE(group_->Remove("k").ok());
  EXPECT_FALSE(group_->GetIfCached("k").has_value());
  EXPECT_EQ(Value(group_->Get("k")), "k@2");
  EXPECT_EQ(origin_.loads, 2);
  // Removing a key nobody holds succeeds.
  EXPECT_TRUE(group_->Remove("absent").ok());
  EXPECT_EQ(group_->Stats().removes, 2);
}

// A node that was out of the cluster drops everything it holds, whatever
// the store's size (a byte limit of "everything" once overflowed to none),
// and a load in flight then does not store its result.
TEST_F(MutationTest, InvalidateAllDropsEveryKeyAndTheLoadsInFlight) {
  Start();
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(Value(group_->Get(absl::StrCat("k", i))), absl::StrCat("k", i, "@1"));
  ASSERT_TRUE(group_->Set("set", "mine").ok());
  Gate gate;
  origin_.gate = &gate;
  std::thread load([&] { EXPECT_EQ(Value(group_->Get("slow")), "slow@1"); });
  gate.AwaitWaiters(1);
  EXPECT_EQ(group_->InvalidateAll(), 101);
  gate.Open();
  load.join();
  origin_.gate = nullptr;
  origin_.version = 2;
  EXPECT_FALSE(group_->GetIfCached("slow").has_value());
  EXPECT_FALSE(group_->GetIfCached("set").has_value());
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(group_->GetIfCached(absl::StrCat("k", i)).has_value());
  EXPECT_EQ(Value(group_->Get("k7")), "k7@2");
}

// load starts -> Remove -> load ends: the load's callers get what it
// loaded, the cache keeps nothing, and a Get that starts after the Remove
// does not join the old load.
TEST_F(MutationTest, ALoadThatBeganBeforeARemoveDoesNotStoreItsResult) {
  Start();
  Gate gate;
  origin_.gate = &gate;
  std::string before;
  std::thread reader([&] { before = Value(group_->Get("k")); });
  gate.AwaitWaiters(1);
  origin_.version = 2;
  ASSERT_TRUE(group_->Remove("k").ok());

  // A Get that starts now loads on its own: the old load was detached.
  std::string after;
  std::thread later([&] { after = Value(group_->Get("k")); });
  gate.AwaitWaiters(2);
  gate.Open();
  reader.join();
  later.join();
  EXPECT_EQ(before, "k@2");  // read the origin after the Remove, but began before it
  EXPECT_EQ(after, "k@2");
  EXPECT_EQ(origin_.loads, 2);
  // The later load stored; the first one did not.
  EXPECT_EQ(group_->Stats().loads_discarded, 1);
  EXPECT_EQ(group_->GetIfCached("k")->value.ToString(), "k@2");
}

TEST_F(MutationTest, ALoadThatBeganBeforeASetDoesNotOverwriteIt) {
  Start();
  Gate gate;
  origin_.gate = &gate;
  std::string racing;
  std::thread reader([&] { racing = Value(group_->Get("k")); });
  gate.AwaitWaiters(1);
  ASSERT_TRUE(group_->Set("k", "set").ok());
  gate.Open();
  reader.join();
  EXPECT_EQ(racing, "k@1");  // the load's own callers get what it loaded
  EXPECT_EQ(Value(group_->Get("k")), "set");
  EXPECT_EQ(group_->Stats().loads_discarded, 1);
  EXPECT_EQ(origin_.loads, 1);
}

TEST_F(MutationTest, ALoadThatBeganAfterARemoveStores) {
  Start();
  ASSERT_TRUE(group_->Remove("k").ok());
  EXPECT_EQ(Value(group_->Get("k")), "k@1");
  EXPECT_EQ(Value(group_->Get("k")), "k@1");
  EXPECT_EQ(origin_.loads, 1);
  EXPECT_EQ(group_->Stats().loads_discarded, 0);
}

TEST_F(MutationTest, BadInputGetsAClearErrorAndChangesNothing) {
  Start({.cache_bytes = 64 << 10, .max_key_bytes = 16});
  ASSERT_TRUE(group_->Set("k", "kept").ok());
  const auto expect_invalid = [&](absl::StatusOr<MutationResult> r, absl::string_view says) {
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
    EXPECT_NE(r.status().message().find(says), absl::string_view::npos) << r.status();
  };
  expect_invalid(group_->Set("", "v"), "empty key");
  expect_invalid(group_->Remove(""), "empty key");
  expect_invalid(group_->Set(std::string(17, 'x'), "v"), "key too long");
  expect_invalid(group_->Remove(std::string(17, 'x')), "key too long");
  expect_invalid(group_->Set("k", "v", absl::Seconds(-1)), "ttl must be >= 0");
  expect_invalid(group_->Set("k", "v", kMaxSetTtl + absl::Seconds(1)), "over the limit");
  expect_invalid(group_->Set("k", std::string(64 << 10, 'v')), "value too large");
  EXPECT_EQ(Value(group_->Get("k")), "kept");
  EXPECT_EQ(group_->Stats().sets, 1);
}

TEST_F(MutationTest, TheLargestValueTheStoreKeepsIsAccepted) {
  Start({.cache_bytes = 64 << 10});
  const int64_t max = group_->store().MaxEntryBytes();
  ASSERT_GT(max, 1);
  EXPECT_TRUE(group_->Set("k", std::string(max - 1, 'v')).ok());
  EXPECT_EQ(group_->GetIfCached("k")->value.size(), static_cast<size_t>(max - 1));
  EXPECT_TRUE(absl::IsInvalidArgument(group_->Set("k", std::string(max, 'v')).status()));
}

// --- With peers ---------------------------------------------------------------

// A peer whose answers the test decides: Get answers `value`; mutations are
// recorded and answered with `mutate_status`, or held until Release when
// `hold` is set.
class FakePeer : public PeerGetter {
 public:
  absl::StatusOr<PeerValue> Get(std::string_view, std::string_view) override {
    return ByteView::Copy(value);
  }
  bool StartGet(std::string_view, std::string_view, absl::Time, Done done, Cancel*) override {
    std::lock_guard lock(mu_);
    if (hold_gets) {
      held_gets_.push_back(std::move(done));
      return true;
    }
    done(ByteView::Copy(value));
    return true;
  }
  void StartMutate(const PeerMutation& m, absl::Time, MutateDone done) override {
    {
      std::lock_guard lock(mu_);
      mutations.push_back(m.kind);
      keys.emplace_back(m.key);
      if (hold_mutations) {
        held_mutations_.push_back(std::move(done));
        return;
      }
    }
    if (mutate_status.ok()) {
      done(MutationResult{.unacknowledged = unacknowledged});
    } else {
      done(mutate_status);
    }
  }
  // Answers the held Gets with `value`.
  void ReleaseGets() {
    std::vector<Done> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_gets_);
    }
    for (Done& d : held) d(ByteView::Copy(value));
  }
  size_t held_gets() {
    std::lock_guard lock(mu_);
    return held_gets_.size();
  }

  // Answers the held mutations with OK.
  void ReleaseMutations() {
    std::vector<MutateDone> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_mutations_);
    }
    for (MutateDone& d : held) d(MutationResult{});
  }

  std::string value = "remote";
  bool hold_gets = false;
  bool hold_mutations = false;  // a hung peer
  absl::Status mutate_status = absl::OkStatus();
  std::vector<std::string> unacknowledged;
  std::vector<PeerMutation::Kind> mutations;
  std::vector<std::string> keys;

 private:
  std::mutex mu_;
  std::vector<Done> held_gets_;
  std::vector<MutateDone> held_mutations_;
};

// Keys starting with "o" are owned by `owner`; the rest by this node.
// Everyone in `others` gets the invalidations.
class FakePicker : public PeerPicker {
 public:
  std::shared_ptr<PeerGetter> PickPeer(std::string_view key) override {
    return key.starts_with("o") ? owner : nullptr;
  }
  Peer OwnerOf(std::string_view key) override {
    if (key.starts_with("o")) return {"owner:1", owner};
    return {"self:0", nullptr};
  }
  std::vector<Peer> OtherPeers() override { return others; }

  std::shared_ptr<FakePeer> owner = std::make_shared<FakePeer>();
  std::vector<Peer> others;
};

class ClusterMutationTest : public MutationTest {
 protected:
  void StartWithPeers(GroupOptions options = {}) {
    options.peers = &picker_;
    options.hot_cache_bytes = 1 << 20;
    options.hot_promotion = HotPromotion::kFrequency;  // kept on its first fetch (room)
    Start(std::move(options));
  }
  // Gets `key` until its copy is kept hot.
  void KeepHot(const std::string& key) {
    for (int i = 0; i < 1000 && !group_->hot_store()->Get(key); ++i) {
      ASSERT_TRUE(group_->Get(key).ok());
    }
    ASSERT_TRUE(group_->hot_store()->Get(key).has_value());
  }

  FakePicker picker_;
};

TEST_F(ClusterMutationTest, ASetOfAKeyAnotherNodeOwnsGoesToTheOwnerOnly) {
  StartWithPeers();
  KeepHot("ok");
  absl::StatusOr<MutationResult> r = group_->Set("ok", "v");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(picker_.owner->mutations.size(), 1u);
  EXPECT_EQ(picker_.owner->mutations[0], PeerMutation::Kind::kSet);
  // The owner's invalidation would drop our copy; we drop it as well.
  EXPECT_FALSE(group_->GetIfCached("ok").has_value());
  EXPECT_EQ(group_->store().Len(), 0);
}

TEST_F(ClusterMutationTest, AGoOwnerRefusesAndNothingChanges) {
  StartWithPeers();
  KeepHot("ok");
  picker_.owner->mutate_status = absl::UnimplementedError("unknown method");
  absl::StatusOr<MutationResult> r = group_->Remove("ok");
  EXPECT_TRUE(absl::IsUnimplemented(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("owner:1"), absl::string_view::npos) << r.status();
  EXPECT_NE(r.status().message().find("nothing was changed"), absl::string_view::npos);
  EXPECT_TRUE(group_->hot_store()->Get("ok").has_value());
}

TEST_F(ClusterMutationTest, AnUnreachableOwnerFailsTheSetWithItsName) {
  StartWithPeers();
  picker_.owner->mutate_status = absl::UnavailableError("connection refused");
  absl::StatusOr<MutationResult> r = group_->Set("ok", "v");
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("owner:1"), absl::string_view::npos) << r.status();
}

TEST_F(ClusterMutationTest, TheOwnerInvalidatesEveryOtherNodeAndListsThoseThatFail) {
  auto good = std::make_shared<FakePeer>();
  auto bad = std::make_shared<FakePeer>();
  bad->mutate_status = absl::DeadlineExceededError("slow");
  picker_.others = {{"good:1", good}, {"bad:2", bad}};
  StartWithPeers();
  absl::StatusOr<MutationResult> r = group_->Set("mine", "v");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->unacknowledged, std::vector<std::string>{"bad:2"});
  ASSERT_EQ(good->mutations.size(), 1u);
  EXPECT_EQ(good->mutations[0], PeerMutation::Kind::kInvalidate);
  EXPECT_EQ(good->keys[0], "mine");
  const GroupStats stats = group_->Stats();
  EXPECT_EQ(stats.invalidations_sent, 2);
  EXPECT_EQ(stats.invalidations_unacked, 1);
  EXPECT_EQ(Value(group_->Get("mine")), "v");
}

// An ejected peer that hangs is told, not waited for: the Set answers at
// once and lists it.
TEST_F(ClusterMutationTest, AnEjectedPeerIsToldButNotWaitedFor) {
  auto hung = std::make_shared<FakePeer>();
  hung->hold_mutations = true;
  auto good = std::make_shared<FakePeer>();
  picker_.others = {{"hung:1", hung, /*out=*/true}, {"good:2", good}};
  StartWithPeers();
  absl::StatusOr<MutationResult> r = group_->Remove("mine");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->unacknowledged, std::vector<std::string>{"hung:1"});
  EXPECT_EQ(hung->mutations.size(), 1u);  // it was sent
  EXPECT_EQ(good->mutations.size(), 1u);
  EXPECT_EQ(group_->Stats().invalidations_unacked, 1);
  hung->ReleaseMutations();  // its late answer changes nothing
  EXPECT_EQ(group_->Stats().invalidations_unacked, 1);
}

// A peer's answer that left the owner before a Set there, and arrives
// after the owner's invalidation: its callers get it, the hot cache does
// not keep it, and a Get after the invalidation asks the owner again.
TEST_F(ClusterMutationTest, AnAnswerThatRacedAnInvalidationIsNotKeptHot) {
  StartWithPeers({.hot_max_age = absl::Hours(1)});
  // The hot cache is empty, so the answer of this first fetch would be kept.
  picker_.owner->hold_gets = true;
  std::string racing;
  std::thread reader([&] { racing = Value(group_->Get("ok")); });
  while (picker_.owner->held_gets() == 0) std::this_thread::yield();
  group_->Invalidate("ok");
  picker_.owner->value = "old";
  picker_.owner->ReleaseGets();
  reader.join();
  EXPECT_EQ(racing, "old");
  EXPECT_FALSE(group_->GetIfCached("ok").has_value());
  EXPECT_EQ(group_->Stats().loads_discarded, 1);
  EXPECT_EQ(group_->Stats().invalidations_received, 1);
}

TEST_F(ClusterMutationTest, AValueLoadedForAFailedOwnerLivesAtMostHotMaxAge) {
  StartWithPeers({.hot_max_age = absl::Seconds(30)});
  // An owner that fails every Get: the key is loaded here.
  class Failing : public FakePeer {
   public:
    bool StartGet(std::string_view, std::string_view, absl::Time, Done done, Cancel*) override {
      done(absl::UnavailableError("down"));
      return true;
    }
  };
  picker_.owner = std::make_shared<Failing>();
  EXPECT_EQ(Value(group_->Get("ok")), "ok@1");
  EXPECT_EQ(group_->GetIfCached("ok")->expire_at, clock_.Now() + absl::Seconds(30));
  // A key this node owns keeps the group's expiry (none).
  EXPECT_EQ(Value(group_->Get("mine")), "mine@1");
  EXPECT_EQ(group_->GetIfCached("mine")->expire_at, absl::InfiniteFuture());
}

// Many readers and a writer on one group: a Get that starts after a Remove
// or Set returned never sees a version older than that mutation's.
TEST_F(MutationTest, NoReadThatStartsAfterAMutationSeesAnOlderVersion) {
  Start();
  constexpr int kKeys = 4;
  constexpr int kMutations = 400;
  std::atomic<int> done_version[kKeys];
  for (auto& v : done_version) v = 0;
  std::atomic<bool> stop{false};
  std::atomic<int> stale{0};
  std::atomic<int64_t> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      for (int i = t; !stop.load(); ++i) {
        const int k = i % kKeys;
        const std::string key = absl::StrCat("k", k);
        const int floor = done_version[k].load();
        absl::StatusOr<ByteView> v = group_->Get(key);
        ++reads;
        if (!v.ok()) continue;
        const std::string s = v->ToString();
        const int version = std::stoi(s.substr(s.find('@') + 1));
        if (version < floor) ++stale;
      }
    });
  }
  for (int m = 1; m <= kMutations; ++m) {
    const int k = m % kKeys;
    const std::string key = absl::StrCat("k", k);
    const int version = origin_.version.fetch_add(1) + 1;
    // The origin changed first, as a write-through user does; then the cache.
    if (m % 2 == 0) {
      ASSERT_TRUE(group_->Remove(key).ok());
    } else {
      ASSERT_TRUE(group_->Set(key, absl::StrCat(key, "@", version)).ok());
    }
    done_version[k] = version;
    // Readers get a turn after each mutation, whoever the scheduler favours.
    const int64_t seen = reads.load();
    while (reads.load() < seen + 3) std::this_thread::yield();
  }
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(stale, 0) << "of " << reads << " reads";
  EXPECT_GE(reads, 3 * kMutations);
  EXPECT_GT(group_->Stats().loads, 0);  // Removes made readers load again
}

TEST(KeyEpochsTest, AStoreAfterAMutationOfItsKeyDoesNotRun) {
  internal::KeyEpochs epochs(Clock::Real());
  const uint64_t e = epochs.Begin("k");
  bool stored = false;
  epochs.Mutate("k", [] {});
  EXPECT_FALSE(epochs.StoreIfUnchanged("k", e, [&] { stored = true; }));
  EXPECT_FALSE(stored);
  const uint64_t e2 = epochs.Begin("k");
  EXPECT_TRUE(epochs.StoreIfUnchanged("k", e2, [&] { stored = true; }));
  EXPECT_TRUE(stored);
}

}  // namespace
}  // namespace lcache
