// A Group across ring changes: the peek at a key's previous owner before a
// load, a departing node's hand-off, and their leases against Set and
// Remove. The peers here are other Groups in this process, reached through
// a fake PeerGetter that can hold a call at a chosen point; the transports
// and real processes are tested in warm_cluster_test and cluster_test.py.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lcache/group.h"
#include "lcache/store.h"

namespace lcache {
namespace {

// The origin every group loads from: "key@version".
class Origin {
 public:
  Getter getter() {
    return [this](std::string_view key) -> absl::StatusOr<Loaded> {
      ++loads;
      return ByteView::Copy(
          absl::StrCat(absl::string_view(key.data(), key.size()), "@", version.load()));
    };
  }
  std::atomic<int> version{1};
  std::atomic<int> loads{0};
};

std::string Value(const absl::StatusOr<ByteView>& v) {
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? v->ToString() : absl::StrCat("<", v.status().ToString(), ">");
}

// Another node, played by a Group: Peek answers from its store, Handoff
// and Invalidate go to it. `hold` keeps the calls' answers until Release.
class GroupPeer : public PeerGetter {
 public:
  explicit GroupPeer(Group* target) : target_(target) {}

  absl::StatusOr<PeerValue> Get(std::string_view, std::string_view) override {
    return absl::UnimplementedError("not used");
  }
  void StartPeek(std::string_view, std::string_view key, absl::Time, Done done) override {
    ++peeks;
    if (go_node) return done(absl::UnimplementedError("unknown method"));
    std::optional<ExpiringValue> v = target_->Peek(key);
    absl::StatusOr<PeerValue> answer = absl::NotFoundError(kKeyNotFoundMessage);
    if (v) {
      answer = v->expire_at == absl::InfiniteFuture()
                   ? PeerValue(v->value)
                   : PeerValue(v->value, v->expire_at - target_->clock().Now());
    }
    Answer([done = std::move(done), answer = std::move(answer)] { done(answer); });
  }
  void StartMutate(const PeerMutation& m, absl::Time, MutateDone done) override {
    ++mutations;
    if (go_node) return done(absl::UnimplementedError("unknown method"));
    if (m.kind == PeerMutation::Kind::kInvalidate) {
      if (unreachable_for_invalidations) return done(absl::UnavailableError("partitioned"));
      target_->Invalidate(m.key);
      done(MutationResult{});
      return;
    }
    ASSERT_EQ(m.kind, PeerMutation::Kind::kHandoff);
    ++handoffs;
    // What arrives is applied when the answer is released, as a call on the
    // wire is applied when it arrives.
    Answer([this, key = std::string(m.key), value = std::string(m.value), ttl = m.ttl,
            done = std::move(done)] {
      absl::Status s = target_->AcceptHandoff(key, value, ttl);
      if (s.ok()) {
        done(MutationResult{});
      } else {
        done(s);
      }
    });
  }

  // Answers (applies) the held calls, oldest first.
  void Release() {
    std::vector<std::function<void()>> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_);
    }
    for (auto& f : held) f();
  }
  size_t held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  void AwaitHeld(size_t n) {
    while (held() < n) std::this_thread::yield();
  }

  std::atomic<bool> hold{false};
  bool go_node = false;  // answers every call of ours UNIMPLEMENTED
  bool unreachable_for_invalidations = false;  // its Invalidates fail, unapplied
  std::atomic<int> peeks{0};
  std::atomic<int> mutations{0};
  std::atomic<int> handoffs{0};

 private:
  void Answer(std::function<void()> f) {
    {
      std::lock_guard lock(mu_);
      if (hold) {
        held_.push_back(std::move(f));
        return;
      }
    }
    f();
  }

  Group* const target_;
  std::mutex mu_;
  std::vector<std::function<void()>> held_;
};

// This node owns every key but those starting with "other" (owned by
// `other`); `previous` owned them before the last ring change and `heir`
// would own them without this node. All get the invalidations of this
// node's Sets and Removes.
class WarmPicker : public PeerPicker {
 public:
  std::shared_ptr<PeerGetter> PickPeer(std::string_view key) override {
    return key.starts_with("other") ? other : nullptr;
  }
  Peer OwnerOf(std::string_view key) override {
    if (key.starts_with("other")) return {"other:3", other};
    return {"self:0", nullptr};
  }
  std::vector<Peer> OtherPeers() override {
    std::vector<Peer> peers;
    if (previous) peers.push_back({"previous:1", previous});
    if (heir) peers.push_back({"heir:2", heir});
    return peers;
  }
  Previous PreviousOwner(std::string_view) override { return {previous, since}; }
  Peer HeirOf(std::string_view key) override {
    if (key.starts_with("other")) return {"other:3", other};
    if (heir == nullptr) return {};
    return {"heir:2", heir};
  }

  std::shared_ptr<GroupPeer> previous;
  std::shared_ptr<GroupPeer> heir;
  std::shared_ptr<GroupPeer> other;
  absl::Time since = absl::InfinitePast();  // when the ring changed
};

class WarmGroupTest : public ::testing::Test {
 protected:
  std::unique_ptr<Group> NewGroup(ManualClock* clock, PeerPicker* picker = nullptr) {
    return *Group::Create({.name = "g",
                           .cache_bytes = 1 << 20,
                           .getter = origin_.getter(),
                           .default_ttl = absl::Seconds(100),
                           .peers = picker,
                           .clock = clock});
  }

  ManualClock clock_;
  Origin origin_;
  WarmPicker picker_;
};

// --- Peek ---------------------------------------------------------------------

TEST_F(WarmGroupTest, AKeyTakenOverIsServedFromThePreviousOwnersCopyWithoutALoad) {
  std::unique_ptr<Group> before = NewGroup(&clock_);
  ASSERT_EQ(Value(before->Get("k")), "k@1");
  clock_.Advance(absl::Seconds(40));
  origin_.version = 2;  // a load now would tell
  picker_.previous = std::make_shared<GroupPeer>(before.get());
  std::unique_ptr<Group> now = NewGroup(&clock_, &picker_);

  EXPECT_EQ(Value(now->Get("k")), "k@1");
  EXPECT_EQ(origin_.loads, 1);
  EXPECT_EQ(now->Stats().peek_hits, 1);
  EXPECT_EQ(before->Stats().peeks_served, 1);
  // Kept as the owner's value, expiring when the first copy does.
  std::optional<ExpiringValue> kept = now->store().GetWithExpiry("k");
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->expire_at, clock_.Now() + absl::Seconds(60));
  EXPECT_EQ(Value(now->Get("k")), "k@1");  // a hit now
  EXPECT_EQ(picker_.previous->peeks, 1);
}

TEST_F(WarmGroupTest, APeekThatFindsNothingLoadsOnceAndThePreviousOwnerLoadsNothing) {
  std::unique_ptr<Group> before = NewGroup(&clock_);
  picker_.previous = std::make_shared<GroupPeer>(before.get());
  std::unique_ptr<Group> now = NewGroup(&clock_, &picker_);
  EXPECT_EQ(Value(now->Get("k")), "k@1");
  EXPECT_EQ(origin_.loads, 1);
  EXPECT_EQ(now->Stats().peek_misses, 1);
  EXPECT_EQ(now->Stats().local_loads, 1);
  EXPECT_EQ(before->Stats().loads, 0);  // a peek never loads
  EXPECT_FALSE(before->Peek("k").has_value());
}

TEST_F(WarmGroupTest, APeekAtAGoNodeLoads) {
  std::unique_ptr<Group> before = NewGroup(&clock_);
  ASSERT_TRUE(before->Get("k").ok());
  picker_.previous = std::make_shared<GroupPeer>(before.get());
  picker_.previous->go_node = true;
  std::unique_ptr<Group> now = NewGroup(&clock_, &picker_);
  EXPECT_EQ(Value(now->Get("k")), "k@1");
  EXPECT_EQ(origin_.loads, 2);
  EXPECT_EQ(now->Stats().peek_misses, 1);
}

// peek asked -> Remove at the new owner -> the peek's answer arrives: its
// caller gets it (it asked before the Remove), nothing keeps it, and the
// next Get loads the origin's value, not the old copy.
TEST_F(WarmGroupTest, ARemoveWhileAPeekIsOnItsWayWins) {
  std::unique_ptr<Group> before = NewGroup(&clock_);
  ASSERT_EQ(Value(before->Get("k")), "k@1");
  picker_.previous = std::make_shared<GroupPeer>(before.get());
  picker_.previous->hold = true;
  std::unique_ptr<Group> now = NewGroup(&clock_, &picker_);

  std::string first;
  std::thread reader([&] { first = Value(now->Get("k")); });
  picker_.previous->AwaitHeld(1);
  origin_.version = 2;
  ASSERT_TRUE(now->Remove("k").ok());  // the owner: invalidates `before` too
  EXPECT_FALSE(before->Peek("k").has_value());
  picker_.previous->hold = false;
  picker_.previous->Release();
  reader.join();

  EXPECT_EQ(first, "k@1");
  EXPECT_FALSE(now->store().Get("k").has_value());
  EXPECT_EQ(now->Stats().loads_discarded, 1);
  EXPECT_EQ(Value(now->Get("k")), "k@2");
}

// Remove at the new owner, whose Invalidate the previous owner missed: the
// previous owner's copy is the removed value, so the new owner does not
// peek at it any more (it would bring the value back); it loads.
TEST_F(WarmGroupTest, AKeyChangedSinceTheRingChangeIsNotPeekedFor) {
  std::unique_ptr<Group> before = NewGroup(&clock_);
  ASSERT_EQ(Value(before->Get("k")), "k@1");
  picker_.previous = std::make_shared<GroupPeer>(before.get());
  picker_.previous->unreachable_for_invalidations = true;
  picker_.since = clock_.Now();
  std::unique_ptr<Group> now = NewGroup(&clock_, &picker_);
  clock_.Advance(absl::Seconds(1));
  origin_.version = 2;
  absl::StatusOr<MutationResult> r = now->Remove("k");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->unacknowledged, std::vector<std::string>{"previous:1"});
  ASSERT_TRUE(before->Peek("k").has_value());  // it kept the removed value

  EXPECT_EQ(Value(now->Get("k")), "k@2");
  EXPECT_EQ(picker_.previous->peeks, 0);
}

TEST_F(WarmGroupTest, AMutationBeforeTheRingChangeDoesNotStopThePeek) {
  std::unique_ptr<Group> before = NewGroup(&clock_);
  std::unique_ptr<Group> now = NewGroup(&clock_, &picker_);
  ASSERT_TRUE(now->Remove("k").ok());  // alone, before the change
  clock_.Advance(absl::Seconds(1));
  ASSERT_EQ(Value(before->Get("k")), "k@1");
  picker_.previous = std::make_shared<GroupPeer>(before.get());
  picker_.since = clock_.Now();
  origin_.version = 2;
  EXPECT_EQ(Value(now->Get("k")), "k@1");
  EXPECT_EQ(now->Stats().peek_hits, 1);
}

// --- AcceptHandoff ------------------------------------------------------------

TEST_F(WarmGroupTest, AHandedOffValueIsKeptWithItsTtlUnlessOneIsHeld) {
  std::unique_ptr<Group> heir = NewGroup(&clock_);
  ASSERT_TRUE(heir->AcceptHandoff("a", "given", absl::Seconds(30)).ok());
  ASSERT_TRUE(heir->AcceptHandoff("b", "forever", std::nullopt).ok());
  EXPECT_EQ(heir->store().GetWithExpiry("a")->expire_at, clock_.Now() + absl::Seconds(30));
  EXPECT_EQ(heir->store().GetWithExpiry("b")->expire_at, absl::InfiniteFuture());

  ASSERT_EQ(Value(heir->Get("c")), "c@1");
  ASSERT_TRUE(heir->AcceptHandoff("c", "older", absl::Seconds(30)).ok());
  EXPECT_EQ(Value(heir->Get("c")), "c@1");  // its own value is as new as any
  EXPECT_EQ(heir->Stats().handoffs_kept, 2);
  EXPECT_EQ(heir->Stats().handoffs_refused, 1);
  EXPECT_EQ(origin_.loads, 1);
}

TEST_F(WarmGroupTest, AHandOffOfAKeyThatChangedLatelyIsRefused) {
  std::unique_ptr<Group> heir = NewGroup(&clock_);
  heir->Invalidate("k");  // the owner's Set or Remove reached us first
  ASSERT_TRUE(heir->AcceptHandoff("k", "old", std::nullopt).ok());
  EXPECT_FALSE(heir->store().Get("k").has_value());
  clock_.Advance(kHandoffQuiet);
  ASSERT_TRUE(heir->AcceptHandoff("k", "later", std::nullopt).ok());
  EXPECT_EQ(Value(heir->Get("k")), "later");
}

TEST_F(WarmGroupTest, BadHandOffsAreRefusedAndChangeNothing) {
  std::unique_ptr<Group> heir = NewGroup(&clock_);
  EXPECT_TRUE(absl::IsInvalidArgument(heir->AcceptHandoff("", "v", std::nullopt)));
  EXPECT_TRUE(absl::IsInvalidArgument(heir->AcceptHandoff("k", "v", absl::Seconds(-1))));
  EXPECT_TRUE(
      absl::IsInvalidArgument(heir->AcceptHandoff("k", std::string(2 << 20, 'v'), std::nullopt)));
  EXPECT_EQ(heir->store().Len(), 0);
}

// --- HandOff ------------------------------------------------------------------

TEST_F(WarmGroupTest, HandOffPushesEveryEntryToItsHeir) {
  ManualClock heir_clock;
  std::unique_ptr<Group> heir = NewGroup(&heir_clock);
  picker_.heir = std::make_shared<GroupPeer>(heir.get());
  std::unique_ptr<Group> leaving = NewGroup(&clock_, &picker_);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(leaving->Get(absl::StrCat("k", i)).ok());
  origin_.version = 2;

  const HandoffResult r = leaving->HandOff({});
  EXPECT_EQ(r.entries, 10);
  EXPECT_EQ(r.bytes, 10 * (2 + 4));  // "kN" + "kN@1"
  EXPECT_EQ(r.failed, 0);
  EXPECT_FALSE(r.cut_short);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(Value(heir->Get(absl::StrCat("k", i))), absl::StrCat("k", i, "@1"));
  }
  EXPECT_EQ(origin_.loads, 10);
  EXPECT_EQ(leaving->Stats().handoff_entries_sent, 10);
  EXPECT_EQ(leaving->Stats().handoff_bytes_sent, 60);
  EXPECT_EQ(heir->Stats().handoffs_kept, 10);
  EXPECT_EQ(leaving->store().Len(), 10);  // it serves them until it goes
}

TEST_F(WarmGroupTest, HandOffSendsCopiesOfKeysAnotherNodeOwnsToThatOwner) {
  // The owner came back and has not asked for it yet: the copy is all there is.
  std::unique_ptr<Group> heir = NewGroup(&clock_);
  std::unique_ptr<Group> owner = NewGroup(&clock_);
  picker_.heir = std::make_shared<GroupPeer>(heir.get());
  picker_.other = std::make_shared<GroupPeer>(owner.get());
  std::unique_ptr<Group> leaving = NewGroup(&clock_, &picker_);
  ASSERT_TRUE(leaving->Get("mine").ok());
  ASSERT_TRUE(leaving->AcceptHandoff("other-key", "v", std::nullopt).ok());

  const HandoffResult r = leaving->HandOff({});
  EXPECT_EQ(r.entries, 2);
  EXPECT_TRUE(heir->store().Get("mine").has_value());
  EXPECT_TRUE(owner->store().Get("other-key").has_value());
  EXPECT_FALSE(heir->store().Get("other-key").has_value());
}

TEST_F(WarmGroupTest, HandOffSendsTheMostRecentlyUsedFirstWithinItsBudget) {
  std::unique_ptr<Group> heir = NewGroup(&clock_);
  picker_.heir = std::make_shared<GroupPeer>(heir.get());
  std::unique_ptr<Group> leaving = NewGroup(&clock_, &picker_);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(leaving->Get(absl::StrCat("k", i)).ok());
  ASSERT_TRUE(leaving->Get("k3").ok());  // the most recently used now

  const HandoffResult r = leaving->HandOff({.max_bytes = 2 * 6});
  EXPECT_EQ(r.entries, 2);
  EXPECT_TRUE(heir->store().Get("k3").has_value());
  EXPECT_TRUE(heir->store().Get("k9").has_value());
  EXPECT_EQ(heir->store().Len(), 2);
}

// value read -> Remove on the leaving node (still the owner; its Invalidate
// reaches the heir before the value) -> the value arrives: the heir may keep
// it (its quiet period has passed on its own clock), so the leaving node,
// seeing the key's epoch moved, invalidates it once more.
TEST_F(WarmGroupTest, ARemoveDuringTheHandOffReachesTheHeirAfterTheValue) {
  ManualClock heir_clock;
  std::unique_ptr<Group> heir = NewGroup(&heir_clock);
  picker_.heir = std::make_shared<GroupPeer>(heir.get());
  picker_.heir->hold = true;
  std::unique_ptr<Group> leaving = NewGroup(&clock_, &picker_);
  ASSERT_TRUE(leaving->Get("k").ok());

  HandoffResult r;
  std::thread handing([&] { r = leaving->HandOff({}); });
  picker_.heir->AwaitHeld(1);
  ASSERT_TRUE(leaving->Remove("k").ok());
  heir_clock.Advance(kHandoffQuiet + absl::Seconds(1));
  picker_.heir->hold = false;
  picker_.heir->Release();
  handing.join();

  EXPECT_EQ(r.entries, 1);
  EXPECT_FALSE(heir->store().Get("k").has_value());
  EXPECT_EQ(picker_.heir->mutations, 3);  // the Remove's Invalidate, Handoff, Invalidate
}

TEST_F(WarmGroupTest, AnHeirThatRefusesHandOffsIsAskedOnce) {
  std::unique_ptr<Group> heir = NewGroup(&clock_);
  picker_.heir = std::make_shared<GroupPeer>(heir.get());
  picker_.heir->go_node = true;
  std::unique_ptr<Group> leaving = NewGroup(&clock_, &picker_);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(leaving->Get(absl::StrCat("k", i)).ok());
  const HandoffResult r = leaving->HandOff({});
  EXPECT_EQ(r.entries, 0);
  EXPECT_EQ(r.failed, 1);
  EXPECT_EQ(r.skipped, 4);
  EXPECT_EQ(picker_.heir->mutations, 1);
}

TEST_F(WarmGroupTest, HandOffWithoutPeersOrBudgetSendsNothing) {
  std::unique_ptr<Group> alone = NewGroup(&clock_);
  ASSERT_TRUE(alone->Get("k").ok());
  EXPECT_EQ(alone->HandOff({}).entries, 0);
  std::unique_ptr<Group> heir = NewGroup(&clock_);
  picker_.heir = std::make_shared<GroupPeer>(heir.get());
  std::unique_ptr<Group> leaving = NewGroup(&clock_, &picker_);
  ASSERT_TRUE(leaving->Get("k").ok());
  EXPECT_EQ(leaving->HandOff({.max_bytes = 0}).entries, 0);
  EXPECT_EQ(picker_.heir->handoffs, 0);
}

// --- Store::ForEachByValue ------------------------------------------------------

std::vector<std::string> KeysByValue(Store& store, int64_t max_bytes) {
  std::vector<std::string> keys;
  store.ForEachByValue(max_bytes, [&](std::string_view key, const ExpiringValue&) {
    keys.emplace_back(key);
    return true;
  });
  return keys;
}

TEST(ForEachByValueTest, LruGivesTheMostRecentlyUsedFirst) {
  std::unique_ptr<Store> store = NewStore({.policy = StorePolicy::kLru, .capacity_bytes = 1 << 20});
  for (const char* k : {"a", "b", "c", "d"}) store->Set(k, "v");
  store->Get("b");
  EXPECT_EQ(KeysByValue(*store, 1 << 20), (std::vector<std::string>{"b", "d", "c", "a"}));
  EXPECT_EQ(KeysByValue(*store, 4), (std::vector<std::string>{"b", "d"}));
  EXPECT_TRUE(KeysByValue(*store, 0).empty());
}

TEST(ForEachByValueTest, Lru2GivesKeysSeenTwiceBeforeKeysSeenOnce) {
  std::unique_ptr<Store> store =
      NewStore({.policy = StorePolicy::kLru2, .capacity_bytes = 1 << 20});
  for (const char* k : {"a", "b", "c"}) store->Set(k, "v");
  store->Get("a");  // seen twice: the main list
  EXPECT_EQ(KeysByValue(*store, 1 << 20), (std::vector<std::string>{"a", "c", "b"}));
}

TEST(ForEachByValueTest, ExpiredEntriesAreSkippedAndTheVisitorCanStop) {
  ManualClock clock;
  std::unique_ptr<Store> store = NewStore({.capacity_bytes = 1 << 20, .clock = &clock});
  store->Set("old", "v", clock.Now() + absl::Seconds(1));
  store->Set("new", "v");
  store->Set("newer", "v");
  clock.Advance(absl::Seconds(2));
  EXPECT_EQ(KeysByValue(*store, 1 << 20), (std::vector<std::string>{"newer", "new"}));
  int visited = 0;
  store->ForEachByValue(1 << 20, [&](std::string_view, const ExpiringValue&) {
    ++visited;
    return false;
  });
  EXPECT_EQ(visited, 1);
}

}  // namespace
}  // namespace lcache
