// A Group's replicas, against races and odd peers: pushes that a Remove or a
// Set overtakes, SetReplicas that cross, holders that take no replicas (Go
// nodes, older builds), the stand-in an asker turns to when the owner fails.
// The peers are other Groups in this process behind a fake PeerGetter that
// can hold a push until the test releases it; the transports and real nodes
// are tested in replication_test and ring_change_test.py.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lcache/clock.h"
#include "lcache/group.h"

namespace lcache {
namespace {

std::string Value(const absl::StatusOr<ByteView>& v) {
  return v.ok() ? v->ToString() : absl::StrCat("<", v.status().ToString(), ">");
}

// Another node, played by a Group. Gets are answered as a forwarded
// request; Replicate calls can be held until Release.
class NodePeer : public PeerGetter {
 public:
  explicit NodePeer(Group* target) : target_(target) {}

  absl::StatusOr<PeerValue> Get(std::string_view, std::string_view key) override {
    ++gets;
    if (down) return absl::UnavailableError("connection refused");
    absl::StatusOr<ExpiringValue> v = target_->GetWithExpiry(key, LoadScope::kLocalOnly);
    if (!v.ok()) return v.status();
    return PeerValue(v->value);
  }
  void StartMutate(const PeerMutation& m, absl::Time, MutateDone done) override {
    {
      std::lock_guard lock(mu_);
      kinds_.push_back(m.kind);
    }
    if (down) return done(absl::UnavailableError("connection refused"));
    if (go_node) return done(absl::UnimplementedError("unknown method"));
    switch (m.kind) {
      case PeerMutation::Kind::kInvalidate:
        target_->Invalidate(m.key);
        return done(MutationResult{});
      case PeerMutation::Kind::kSetReplica:
        if (old_build) return done(absl::UnimplementedError("unknown method"));
        return Reply(target_->AcceptSetReplica(m.key, m.value, m.ttl), std::move(done));
      case PeerMutation::Kind::kReplicate: {
        auto apply = [this, key = std::string(m.key), value = std::string(m.value), ttl = m.ttl,
                      done = std::move(done)] {
          Reply(target_->AcceptReplica(key, value, ttl), done);
        };
        if (hold) {
          held_.push_back(std::move(apply));
          return;
        }
        return apply();
      }
      default:
        return done(absl::UnimplementedError("not in this test"));
    }
  }
  void Release() {
    std::vector<std::function<void()>> held;
    held.swap(held_);
    for (auto& f : held) f();
  }
  int Count(PeerMutation::Kind kind) const {
    std::lock_guard lock(mu_);
    int n = 0;
    for (PeerMutation::Kind k : kinds_) n += k == kind;
    return n;
  }

  bool down = false;
  bool hold = false;
  bool go_node = false;    // answers every call of ours UNIMPLEMENTED
  bool old_build = false;  // knows Invalidate, not SetReplica
  std::atomic<int> gets{0};

 private:
  static void Reply(const absl::Status& s, const MutateDone& done) {
    if (s.ok()) {
      done(MutationResult{});
    } else {
      done(s);
    }
  }
  Group* const target_;
  mutable std::mutex mu_;
  std::vector<PeerMutation::Kind> kinds_;    // GUARDED_BY(mu_)
  std::vector<std::function<void()>> held_;  // the test's thread only
};

// Node "a" (the group under test) owns keys without a prefix; node "b" owns
// keys starting with "b:". Each key's replica lives on the node that follows
// its owner: b for a's keys, c for b's.
class TwoOwnersPicker : public PeerPicker {
 public:
  std::shared_ptr<PeerGetter> PickPeer(std::string_view key) override {
    return key.starts_with("b:") ? b : nullptr;
  }
  Peer OwnerOf(std::string_view key) override {
    if (key.starts_with("b:") || plain_keys_owner_elsewhere) return {"b:1", b};
    return {"a:0", nullptr};
  }
  std::vector<Peer> OtherPeers() override {
    std::vector<Peer> peers;
    if (b) peers.push_back({"b:1", b});
    if (c) peers.push_back({"c:2", c});
    return peers;
  }
  std::vector<Peer> ReplicaHolders(std::string_view key) override {
    if (key.starts_with("b:") || b == nullptr) return {};
    return {{"b:1", b}};
  }
  Peer StandIn(std::string_view key) override {
    if (!key.starts_with("b:")) return {};
    if (c == nullptr) return {"a:0", nullptr};
    return {"c:2", c};
  }

  std::shared_ptr<NodePeer> b;
  std::shared_ptr<NodePeer> c;
  // a's keys had another owner (before a ring change made them a's).
  bool plain_keys_owner_elsewhere = false;
};

class GroupReplicaTest : public ::testing::Test {
 protected:
  std::unique_ptr<Group> NewGroup(PeerPicker* picker = nullptr, int64_t replica_bytes = 1 << 20) {
    return *Group::Create({.name = "g",
                           .cache_bytes = 1 << 20,
                           .getter = [this](std::string_view key) -> absl::StatusOr<Loaded> {
                             ++loads_;
                             return ByteView::Copy(absl::StrCat(
                                 absl::string_view(key.data(), key.size()), "@", version_.load()));
                           },
                           .default_ttl = absl::Seconds(100),
                           .peers = picker,
                           .hot_cache_bytes = 0,
                           .replica_cache_bytes = replica_bytes,
                           .clock = &clock_});
  }
  // Node a, with b as the holder of its keys' replicas.
  void StartPair() {
    b_ = NewGroup();
    picker_.b = std::make_shared<NodePeer>(b_.get());
    a_ = NewGroup(&picker_);
  }
  bool Holds(Group& g, std::string_view key) { return g.replica_store()->Get(key).has_value(); }

  ManualClock clock_;
  std::atomic<int> loads_{0};
  std::atomic<int> version_{1};
  TwoOwnersPicker picker_;
  TwoOwnersPicker c_picker_;
  std::unique_ptr<Group> b_;
  std::unique_ptr<Group> c_;
  std::unique_ptr<Group> a_;  // last: its picker's peers are the others
};

TEST_F(GroupReplicaTest, ALoadIsPushedToTheHolderWithItsTimeToLive) {
  StartPair();
  clock_.Advance(absl::Seconds(1));
  ASSERT_EQ(Value(a_->Get("k")), "k@1");
  std::optional<ExpiringValue> replica = b_->replica_store()->GetWithExpiry("k");
  ASSERT_TRUE(replica.has_value());
  EXPECT_EQ(replica->value.ToString(), "k@1");
  EXPECT_EQ(replica->expire_at, clock_.Now() + absl::Seconds(100));
  EXPECT_EQ(a_->Stats().replicas_pushed, 1);
  EXPECT_EQ(b_->Stats().replicas_kept, 1);
  // A hit pushes nothing; only loads do.
  ASSERT_EQ(Value(a_->Get("k")), "k@1");
  EXPECT_EQ(picker_.b->Count(PeerMutation::Kind::kReplicate), 1);
  // The holder's own Get does not answer from the replica: "k" is a's.
  EXPECT_FALSE(b_->store().Get("k").has_value());
}

// The push was sent before the Remove; the Remove's Invalidate overtakes it.
// The holder refuses a replica of a key changed within kReplicaQuiet.
TEST_F(GroupReplicaTest, APushOvertakenByARemoveIsRefused) {
  StartPair();
  picker_.b->hold = true;
  ASSERT_EQ(Value(a_->Get("k")), "k@1");
  ASSERT_TRUE(a_->Remove("k").ok());
  picker_.b->Release();
  EXPECT_FALSE(Holds(*b_, "k"));
  EXPECT_EQ(b_->Stats().replicas_refused, 1);
}

// The same, with the push so slow that the quiet period is over when it
// arrives: the owner saw the key change while the push was on its way, and
// follows it with another Invalidate.
TEST_F(GroupReplicaTest, APushThatOutlivesTheQuietPeriodIsFollowedByAnInvalidate) {
  StartPair();
  picker_.b->hold = true;
  ASSERT_EQ(Value(a_->Get("k")), "k@1");
  ASSERT_TRUE(a_->Remove("k").ok());
  clock_.Advance(kReplicaQuiet + absl::Seconds(1));
  const int invalidations = picker_.b->Count(PeerMutation::Kind::kInvalidate);
  picker_.b->Release();
  EXPECT_EQ(b_->Stats().replicas_kept, 1);  // kept on arrival...
  EXPECT_EQ(picker_.b->Count(PeerMutation::Kind::kInvalidate), invalidations + 1);
  EXPECT_FALSE(Holds(*b_, "k"));  // ...and dropped by the follow-up
}

TEST_F(GroupReplicaTest, ASetReplacesTheReplicaInOneStep) {
  StartPair();
  ASSERT_EQ(Value(a_->Get("k")), "k@1");
  clock_.Advance(kReplicaQuiet);
  absl::StatusOr<MutationResult> set = a_->Set("k", "new", absl::Seconds(30));
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->unacknowledged.empty());
  EXPECT_EQ(picker_.b->Count(PeerMutation::Kind::kSetReplica), 1);
  EXPECT_EQ(picker_.b->Count(PeerMutation::Kind::kInvalidate), 0);
  std::optional<ExpiringValue> replica = b_->replica_store()->GetWithExpiry("k");
  ASSERT_TRUE(replica.has_value());
  EXPECT_EQ(replica->value.ToString(), "new");
  EXPECT_EQ(replica->expire_at, clock_.Now() + absl::Seconds(30));
}

// Two Sets whose SetReplicas arrive in the wrong order: the holder keeps
// neither value rather than the older one.
TEST_F(GroupReplicaTest, CrossingSetReplicasLeaveNoReplica) {
  b_ = NewGroup();
  ASSERT_TRUE(b_->AcceptSetReplica("k", "second", std::nullopt).ok());
  EXPECT_EQ(b_->replica_store()->Get("k")->ToString(), "second");
  ASSERT_TRUE(b_->AcceptSetReplica("k", "first", std::nullopt).ok());
  EXPECT_FALSE(Holds(*b_, "k"));
  // Once the stripe is quiet again, a SetReplica is kept.
  clock_.Advance(kReplicaQuiet);
  ASSERT_TRUE(b_->AcceptSetReplica("k", "third", std::nullopt).ok());
  EXPECT_EQ(b_->replica_store()->Get("k")->ToString(), "third");
}

TEST_F(GroupReplicaTest, ASetReplicaItCannotKeepStillDropsTheCopies) {
  b_ = *Group::Create(
      {.name = "g",
       .cache_bytes = 64,
       .getter = [](std::string_view) -> absl::StatusOr<Loaded> { return ByteView::Copy("v"); },
       .replica_cache_bytes = 64,
       .clock = &clock_});
  ASSERT_TRUE(b_->Get("k").ok());
  ASSERT_TRUE(b_->store().Get("k").has_value());
  ASSERT_TRUE(b_->AcceptSetReplica("k", std::string(1000, 'x'), std::nullopt).ok());
  EXPECT_FALSE(b_->store().Get("k").has_value());
  EXPECT_FALSE(Holds(*b_, "k"));
  EXPECT_EQ(b_->Stats().replicas_refused, 1);
  EXPECT_EQ(b_->Stats().invalidations_received, 1);
  // A bad key is refused outright.
  EXPECT_TRUE(absl::IsInvalidArgument(b_->AcceptSetReplica("", "v", std::nullopt)));
  EXPECT_TRUE(absl::IsInvalidArgument(b_->AcceptReplica("", "v", std::nullopt)));
}

TEST_F(GroupReplicaTest, WithoutAReplicaStorePushesAreRefused) {
  b_ = NewGroup(nullptr, /*replica_bytes=*/0);
  EXPECT_EQ(b_->replica_store(), nullptr);
  ASSERT_TRUE(b_->AcceptReplica("k", "v", std::nullopt).ok());
  EXPECT_EQ(b_->Stats().replicas_refused, 1);
  EXPECT_FALSE(b_->store().Get("k").has_value());
}

TEST_F(GroupReplicaTest, AGoHolderIsAskedOnce) {
  StartPair();
  picker_.b->go_node = true;
  for (const char* key : {"k1", "k2", "k3"}) ASSERT_TRUE(a_->Get(key).ok());
  EXPECT_EQ(picker_.b->Count(PeerMutation::Kind::kReplicate), 1);
  // Its Set sends the invalidation Go nodes have always been sent.
  (void)a_->Set("k1", "new");
  EXPECT_EQ(picker_.b->Count(PeerMutation::Kind::kSetReplica), 0);
  EXPECT_EQ(picker_.b->Count(PeerMutation::Kind::kInvalidate), 1);
  // It holds no replicas: its refusal is not retried.
  EXPECT_EQ(a_->Stats().replica_invalidations_pending, 0);
}

// A holder of an older build does not know SetReplica: it gets the
// Invalidate it knows, and the Set is acknowledged.
TEST_F(GroupReplicaTest, AHolderWithoutSetReplicaStillGetsTheInvalidation) {
  StartPair();
  ASSERT_TRUE(a_->Get("k").ok());
  ASSERT_TRUE(Holds(*b_, "k"));
  picker_.b->old_build = true;
  absl::StatusOr<MutationResult> set = a_->Set("k", "new");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->unacknowledged.empty());
  EXPECT_FALSE(Holds(*b_, "k"));
  EXPECT_EQ(picker_.b->Count(PeerMutation::Kind::kInvalidate), 1);
  // Not asked for replicas again.
  ASSERT_TRUE(a_->Get("k2").ok());
  EXPECT_EQ(picker_.b->Count(PeerMutation::Kind::kReplicate), 1);
}

// A holder that was down when a key was removed keeps its replica; the
// owner sends the invalidation again until the holder acknowledges it.
TEST_F(GroupReplicaTest, AHolderThatMissedARemoveIsToldAgainOnceItIsBack) {
  StartPair();
  ASSERT_TRUE(a_->Get("k").ok());
  ASSERT_TRUE(Holds(*b_, "k"));
  picker_.b->down = true;
  absl::StatusOr<MutationResult> removed = a_->Remove("k");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->unacknowledged, std::vector<std::string>{"b:1"});
  EXPECT_EQ(a_->Stats().replica_invalidations_pending, 1);
  // Still down: one call for the holder, and the key waits.
  const int calls = picker_.b->Count(PeerMutation::Kind::kInvalidate);
  EXPECT_EQ(a_->RetryInvalidations(absl::Now() + absl::Seconds(1)), 0);
  EXPECT_EQ(picker_.b->Count(PeerMutation::Kind::kInvalidate), calls + 1);
  EXPECT_EQ(a_->Stats().replica_invalidations_pending, 1);
  EXPECT_TRUE(Holds(*b_, "k"));

  picker_.b->down = false;
  EXPECT_EQ(a_->RetryInvalidations(absl::Now() + absl::Seconds(1)), 1);
  EXPECT_FALSE(Holds(*b_, "k"));
  EXPECT_EQ(a_->Stats().replica_invalidations_pending, 0);
  EXPECT_EQ(a_->Stats().replica_invalidations_retried, 1);
  EXPECT_EQ(a_->RetryInvalidations(absl::Now() + absl::Seconds(1)), 0);  // nothing left
}

// A non-holder that misses an invalidation is not sent it again: its copies
// live no longer than hot_max_age.
TEST_F(GroupReplicaTest, OnlyReplicaHoldersAreToldAgain) {
  b_ = NewGroup();
  c_ = NewGroup();
  picker_.b = std::make_shared<NodePeer>(b_.get());
  picker_.c = std::make_shared<NodePeer>(c_.get());
  a_ = NewGroup(&picker_);
  picker_.c->down = true;  // c holds no replica of a's keys
  ASSERT_TRUE(a_->Remove("k").ok());
  EXPECT_EQ(a_->Stats().replica_invalidations_pending, 0);
}

// b owns "b:k" and is down; c holds its replica: a asks c, which answers
// from the replica without a load anywhere.
TEST_F(GroupReplicaTest, WhenTheOwnerFailsTheStandInAnswersFromItsReplica) {
  b_ = NewGroup();
  picker_.b = std::make_shared<NodePeer>(b_.get());
  c_picker_.b = picker_.b;  // c's view: b owns "b:k" too
  c_ = NewGroup(&c_picker_);
  picker_.c = std::make_shared<NodePeer>(c_.get());
  a_ = NewGroup(&picker_);
  ASSERT_TRUE(c_->AcceptReplica("b:k", "b:k@owner", std::nullopt).ok());
  picker_.b->down = true;
  EXPECT_EQ(Value(a_->Get("b:k")), "b:k@owner");
  EXPECT_EQ(loads_, 0);
  EXPECT_EQ(a_->Stats().peer_errors, 1);
  EXPECT_EQ(a_->Stats().stand_in_calls, 1);
  EXPECT_EQ(c_->Stats().replica_hits, 1);
  // The stand-in keeps it a replica: the owner is still on the ring.
  EXPECT_FALSE(c_->store().Get("b:k").has_value());
  EXPECT_TRUE(Holds(*c_, "b:k"));

  // The stand-in down too: a loads it itself, once.
  picker_.c->down = true;
  EXPECT_EQ(Value(a_->Get("b:k2")), "b:k2@1");
  EXPECT_EQ(loads_, 1);
  EXPECT_EQ(a_->Stats().stand_in_calls, 2);
}

TEST_F(GroupReplicaTest, WhenThisNodeIsTheStandInItAnswersFromItsOwnReplica) {
  b_ = NewGroup();
  picker_.b = std::make_shared<NodePeer>(b_.get());
  a_ = NewGroup(&picker_);
  ASSERT_TRUE(a_->AcceptReplica("b:k", "b:k@owner", std::nullopt).ok());
  picker_.b->down = true;
  EXPECT_EQ(Value(a_->Get("b:k")), "b:k@owner");
  EXPECT_EQ(loads_, 0);
  EXPECT_EQ(a_->Stats().replica_hits, 1);
  EXPECT_EQ(a_->Stats().stand_in_calls, 0);
  // A Remove that reaches a drops its replica like any copy.
  a_->Invalidate("b:k");
  EXPECT_FALSE(Holds(*a_, "b:k"));
}

// The key is a's now (its owner left the ring): the replica moves to the
// store and is pushed to a's own holder.
TEST_F(GroupReplicaTest, TheHeirPromotesTheReplicaAndReplicatesItOnward) {
  StartPair();
  picker_.plain_keys_owner_elsewhere = true;  // a holds the replica of the old owner's key
  ASSERT_TRUE(a_->AcceptReplica("k", "k@old-owner", absl::Seconds(50)).ok());
  picker_.plain_keys_owner_elsewhere = false;  // the owner left: a is its heir
  EXPECT_EQ(Value(a_->Get("k")), "k@old-owner");
  EXPECT_EQ(loads_, 0);
  std::optional<ExpiringValue> stored = a_->store().GetWithExpiry("k");
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->expire_at, clock_.Now() + absl::Seconds(50));
  EXPECT_FALSE(Holds(*a_, "k"));
  EXPECT_EQ(b_->replica_store()->Get("k")->ToString(), "k@old-owner");
}

// A replica of a key this node owns comes from a node the others dropped
// (its lease lapsed, or it was paused), pushing a value it loaded before:
// Sets made here meanwhile may be newer. It is refused.
TEST_F(GroupReplicaTest, AReplicaOfAKeyThisNodeOwnsIsRefused) {
  StartPair();
  ASSERT_TRUE(a_->Set("k", "k@set-here").ok());
  clock_.Advance(absl::Seconds(10));  // past the quiet period
  ASSERT_TRUE(a_->AcceptReplica("k", "k@pushed-late", std::nullopt).ok());
  EXPECT_FALSE(Holds(*a_, "k"));
  EXPECT_EQ(a_->Stats().replicas_refused, 1);
  EXPECT_EQ(Value(a_->Get("k")), "k@set-here");
  // A SetReplica from such a node drops the copies, as the Invalidate it
  // stands for, and keeps nothing: an old Set applied there late.
  ASSERT_TRUE(a_->AcceptSetReplica("k", "k@set-late", std::nullopt).ok());
  EXPECT_FALSE(Holds(*a_, "k"));
  EXPECT_FALSE(a_->store().Get("k").has_value());
  EXPECT_EQ(Value(a_->Get("k")), "k@1");  // loaded again
}

// Loads, Sets and Removes of a few keys from several threads, with the
// clock moving past the quiet period now and then: whatever the
// interleaving, once everything has ended the holder's replica of a key is
// either absent or the owner's current value. (Under ThreadSanitizer this
// also checks the push paths for races.)
TEST_F(GroupReplicaTest, RacingLoadsAndMutationsLeaveNoReplicaOtherThanTheOwnersValue) {
  StartPair();
  constexpr int kKeyCount = 8;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) (void)a_->Get(absl::StrCat("k", (i + t) % kKeyCount));
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 3000; ++i) {
      const std::string key = absl::StrCat("k", i % kKeyCount);
      if (i % 3 == 0) {
        (void)a_->Remove(key);
      } else {
        (void)a_->Set(key, absl::StrCat("set-", i));
      }
      version_.fetch_add(1);
      if (i % 50 == 0) clock_.Advance(kReplicaQuiet + absl::Milliseconds(1));
    }
    stop = true;
  });
  for (std::thread& t : threads) t.join();
  int replicas = 0;
  for (int k = 0; k < kKeyCount; ++k) {
    const std::string key = absl::StrCat("k", k);
    std::optional<ByteView> replica = b_->replica_store()->Get(key);
    if (!replica) continue;
    ++replicas;
    std::optional<ByteView> owners = a_->store().Get(key);
    ASSERT_TRUE(owners.has_value()) << key << ": a replica of a removed key";
    EXPECT_EQ(replica->ToString(), owners->ToString()) << key;
  }
  // Something was kept along the way, or the check above checked nothing.
  EXPECT_GT(b_->Stats().replicas_kept, 0);
  (void)replicas;
}

}  // namespace
}  // namespace lcache
