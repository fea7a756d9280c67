// Replication over the wire (docs/PROTOCOL.md, section 9): three Nodes in
// one process over loopback, on each transport, with each key on its owner
// and its successor (replication 2). A node that dies is answered for by
// its keys' replica holders, so its keys are not loaded again, neither while
// the others still list it nor once they drop it; Remove and Set reach the
// replicas; a replica expires with its owner's copy. Each scenario also runs
// without replicas, where the same reads load.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/clock.h"
#include "lcache/hash_ring.h"
#include "lcache/node.h"
#include "lcache/peer_server.h"
#include "three_nodes.h"

namespace lcache {
namespace {

using ::lcache::testing::RawGrpcCall;
using ::lcache::testing::RawResult;
using ::lcache::testing::ThreeNodeTest;
using ::testing::HasSubstr;

class ReplicationTest : public ThreeNodeTest {
 protected:
  void StartNode(int i, int replication) {
    NodeOptions options = BaseOptions(i, Ring({0, 1, 2}), /*manual_clock=*/true);
    options.ring.replication = replication;
    options.ring.warmup = absl::ZeroDuration();       // replicas alone, no peeks
    options.handoff_bytes = 0;                        // a stop here stands for a crash
    options.reclaim_interval = absl::ZeroDuration();  // expiry by the test's clock only
    Start(i, std::move(options));
  }
  void StartAll(int replication) {
    for (int i = 0; i < 3; ++i) StartNode(i, replication);
  }
  // Pushes are not waited for by the load: wait (with a deadline) until the
  // holders have kept `n` replicas between them.
  void AwaitReplicasKept(int64_t n) { AwaitSum(&GroupStats::replicas_kept, n); }
  void AwaitSum(int64_t GroupStats::*field, int64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    int64_t sum = 0;
    while (absl::Now() < deadline) {
      sum = 0;
      for (int i = 0; i < 3; ++i) {
        if (nodes_[i] != nullptr) sum += StatsOf(i).*field;
      }
      if (sum >= n) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_EQ(sum, n);
  }
  int KeysOwnedBy(int i) const { return ThreeNodeTest::KeysOwnedBy(i, Ring({0, 1, 2})); }
  // A key node `i` owns on the full ring, and the node that holds its replica.
  std::pair<std::string, int> KeyOwnedBy(int i) const {
    const HashRing ring(RingKind::kGroupcache, Ring({0, 1, 2}));
    for (int k = 0; k < kKeys; ++k) {
      const std::string key = absl::StrCat("key-", k);
      const std::vector<std::string_view> s = ring.Successors(key, 2);
      if (s[0] != addresses_[i]) continue;
      for (int h = 0; h < 3; ++h) {
        if (s[1] == addresses_[h]) return {key, h};
      }
    }
    ADD_FAILURE() << "node " << i << " owns none of the keys";
    return {"", -1};
  }
  // Node 2 dies: its server goes without handing anything off.
  void Crash(int i) { nodes_[i].reset(); }
};

TEST_P(ReplicationTest, EveryLoadIsReplicatedToTheOwnersSuccessor) {
  StartAll(/*replication=*/2);
  ReadAll();
  ASSERT_EQ(loads_, kKeys);
  AwaitReplicasKept(kKeys);
  // The owners count a push when its answer arrives, after the holder kept it.
  AwaitSum(&GroupStats::replicas_pushed, kKeys);
  int64_t held = 0;
  for (int i = 0; i < 3; ++i) {
    held += StatsOf(i).replica_store.items;
    // A holder answers no ordinary Get from its replicas.
    EXPECT_EQ(StatsOf(i).replica_hits, 0);
  }
  EXPECT_EQ(held, kKeys);
  // Each holder keeps the replicas of the keys whose successor it is.
  const HashRing ring(RingKind::kGroupcache, Ring({0, 1, 2}));
  std::vector<int> expected(3);
  for (int k = 0; k < kKeys; ++k) {
    const std::string_view holder = ring.Successors(absl::StrCat("key-", k), 2)[1];
    for (int h = 0; h < 3; ++h) expected[h] += holder == addresses_[h];
  }
  for (int h = 0; h < 3; ++h) EXPECT_EQ(StatsOf(h).replica_store.items, expected[h]) << h;
}

TEST_P(ReplicationTest, ADeadOwnersKeysAreAnsweredByTheirReplicas) {
  StartAll(/*replication=*/2);
  ReadAll();
  AwaitReplicasKept(kKeys);
  ASSERT_GT(KeysOwnedBy(2), 20);
  Crash(2);
  // The others still list it: their calls fail, and the stand-in answers.
  ReadAll();
  EXPECT_EQ(loads_, kKeys) << "keys of the dead node were loaded again";
  EXPECT_EQ(StatsOf(0).replica_hits + StatsOf(1).replica_hits, KeysOwnedBy(2));
  EXPECT_GT(StatsOf(0).stand_in_calls + StatsOf(1).stand_in_calls, 0);

  // The ring settles without it: the heirs own the keys and have them.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(nodes_[i]->SetPeers(Ring({0, 1})).ok());
  ReadAll();
  EXPECT_EQ(loads_, kKeys) << "keys of the dead node were loaded by their heirs";
}

TEST_P(ReplicationTest, WithoutReplicasADeadOwnersKeysAreLoadedAgain) {
  StartAll(/*replication=*/1);
  ReadAll();
  Crash(2);
  ReadAll();
  EXPECT_EQ(loads_, kKeys + KeysOwnedBy(2));
  EXPECT_EQ(StatsOf(0).replica_hits + StatsOf(1).replica_hits, 0);
  EXPECT_EQ(StatsOf(0).replica_store.capacity_bytes, 0);
}

// Two crashes, with the ring settling in between: after the first, the
// survivors give every key they own a holder again (the keys whose holder
// died, and those they inherited from the dead node, which sit in their
// replica stores), so the second crash loses nothing either.
TEST_P(ReplicationTest, AfterARingChangeKeysGetNewHoldersSoASecondCrashLosesNothing) {
  StartAll(/*replication=*/2);
  ReadAll();
  AwaitReplicasKept(kKeys);
  const int64_t resyncs_at_start = StatsOf(0).replica_resyncs + StatsOf(1).replica_resyncs;
  Crash(2);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(nodes_[i]->SetPeers(Ring({0, 1})).ok());
  // Each node re-replicates once after the change.
  AwaitSum(&GroupStats::replica_resyncs, resyncs_at_start + 2);
  EXPECT_EQ(StatsOf(0).replicas_promoted + StatsOf(1).replicas_promoted, KeysOwnedBy(2))
      << "every inherited replica moved to its heir's store, without a read";
  Crash(1);
  ASSERT_TRUE(nodes_[0]->SetPeers(Ring({0})).ok());
  ReadAll();
  EXPECT_EQ(loads_, kKeys) << "a key lost both its copies";
}

TEST_P(ReplicationTest, AReturningNodeIsGivenTheReplicasItHolds) {
  StartAll(/*replication=*/2);
  ReadAll();
  AwaitReplicasKept(kKeys);
  // Node 2 restarts empty (a crash and a fresh start); the others see it
  // leave and come back.
  const int64_t resyncs = StatsOf(0).replica_resyncs + StatsOf(1).replica_resyncs;
  Crash(2);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(nodes_[i]->SetPeers(Ring({0, 1})).ok());
  AwaitSum(&GroupStats::replica_resyncs, resyncs + 2);
  StartNode(2, /*replication=*/2);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(nodes_[i]->SetPeers(Ring({0, 1, 2})).ok());
  // Node 2 holds the replicas of the keys it follows again, unasked.
  const HashRing ring(RingKind::kGroupcache, Ring({0, 1, 2}));
  int64_t held_by_2 = 0;
  for (int k = 0; k < kKeys; ++k) {
    const std::vector<std::string_view> s = ring.Successors(absl::StrCat("key-", k), 2);
    held_by_2 += s[1] == addresses_[2] && s[0] != addresses_[2];
  }
  ASSERT_GT(held_by_2, 10);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (StatsOf(2).replica_store.items < held_by_2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(StatsOf(2).replica_store.items, held_by_2);
}

TEST_P(ReplicationTest, RemoveReachesTheReplica) {
  StartAll(/*replication=*/2);
  ReadAll();
  AwaitReplicasKept(kKeys);
  const auto [key, holder] = KeyOwnedBy(2);
  ASSERT_TRUE(G(holder)->replica_store()->Get(key).has_value());
  absl::StatusOr<MutationResult> removed = G(0)->Remove(key);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_TRUE(removed->unacknowledged.empty());
  EXPECT_FALSE(G(holder)->replica_store()->Get(key).has_value());

  version_ = 2;
  Crash(2);
  absl::StatusOr<ByteView> v = G(holder == 0 ? 1 : 0)->Get(key);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->ToString(), key + "@2") << "the removed value came back from a replica";
}

TEST_P(ReplicationTest, ASetValueIsReplicatedAndOutlivesItsOwner) {
  StartAll(/*replication=*/2);
  ReadAll();
  AwaitReplicasKept(kKeys);
  const auto [key, holder] = KeyOwnedBy(2);
  // The Set's stripe on the holder was quiet: it keeps the new value.
  absl::StatusOr<MutationResult> set = G(0)->Set(key, "set-value");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->unacknowledged.empty());
  std::optional<ByteView> replica = G(holder)->replica_store()->Get(key);
  ASSERT_TRUE(replica.has_value());
  EXPECT_EQ(replica->ToString(), "set-value");

  Crash(2);
  const int before = loads_;
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<ByteView> v = G(i)->Get(key);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->ToString(), "set-value") << "through node " << i;
  }
  EXPECT_EQ(loads_, before);
}

TEST_P(ReplicationTest, AReplicaExpiresWithItsOwnersCopy) {
  StartAll(/*replication=*/2);
  ReadAll();
  AwaitReplicasKept(kKeys);
  const auto [key, holder] = KeyOwnedBy(2);
  clock_.Advance(absl::Seconds(601));  // past the owner's default_ttl
  version_ = 2;
  Crash(2);
  absl::StatusOr<ByteView> v = G(holder == 0 ? 1 : 0)->Get(key);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->ToString(), key + "@2") << "an expired replica was served";
  EXPECT_EQ(StatsOf(holder).replica_hits, 0);
}

// --- The methods, as a foreign client calls them --------------------------------

TEST_P(ReplicationTest, ReplicateAndSetReplicaOverTheWire) {
  StartNode(0, /*replication=*/2);
  // Replicas are of keys another node owns (nodes 1 and 2 are not running).
  const HashRing ring(RingKind::kGroupcache, Ring({0, 1, 2}));
  auto key_not_owned_by_0 = [&](const std::string& prefix) {
    for (int n = 0;; ++n) {
      std::string key = absl::StrCat(prefix, n);
      if (ring.Owner(key) != addresses_[0]) return key;
    }
  };
  const std::string k = key_not_owned_by_0("k");
  const std::string held = key_not_owned_by_0("held");
  auto channel = grpc::CreateChannel(addresses_[0], grpc::InsecureChannelCredentials());
  const std::string value = absl::Base64Escape("pushed");
  RawResult r = RawGrpcCall(
      channel, kReplicateMethod,
      absl::StrCat(R"({"group":"g","key":")", k, R"(","value":")", value, R"(","ttl_ms":60000})"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.body, "{}");
  std::optional<ExpiringValue> replica = G(0)->replica_store()->GetWithExpiry(k);
  ASSERT_TRUE(replica.has_value());
  EXPECT_EQ(replica->value.ToString(), "pushed");
  EXPECT_EQ(replica->expire_at, clock_.Now() + absl::Seconds(60));
  // Not an ordinary value of the node.
  EXPECT_FALSE(G(0)->store().Get(k).has_value());

  // SetReplica stands for an Invalidate: it drops the node's copies, and
  // keeps the value only if the key's stripe was quiet before.
  r = RawGrpcCall(channel, kSetReplicaMethod,
                  absl::StrCat(R"({"group":"g","key":")", held, R"(","value":")", value, R"("})"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.body, "{}");
  EXPECT_EQ(G(0)->replica_store()->Get(held)->ToString(), "pushed");
  r = RawGrpcCall(channel, kSetReplicaMethod,
                  absl::StrCat(R"({"group":"g","key":")", held, R"(","value":")",
                               absl::Base64Escape("second"), R"("})"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_FALSE(G(0)->replica_store()->Get(held).has_value())
      << "a second SetReplica within kReplicaQuiet kept its value";
  // A Replicate right after a mutation of the stripe is refused.
  r = RawGrpcCall(channel, kReplicateMethod,
                  absl::StrCat(R"({"group":"g","key":")", held, R"(","value":")", value, R"("})"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_FALSE(G(0)->replica_store()->Get(held).has_value());
  EXPECT_EQ(StatsOf(0).replicas_kept, 2);
  EXPECT_EQ(StatsOf(0).replicas_refused, 2);
  // So is a replica of a key this node owns: its sender is not the owner
  // (a node the others dropped, sending what it had before).
  std::string mine = "mine0";
  for (int n = 1; ring.Owner(mine) != addresses_[0]; ++n) mine = absl::StrCat("mine", n);
  clock_.Advance(absl::Seconds(10));
  r = RawGrpcCall(channel, kReplicateMethod,
                  absl::StrCat(R"({"group":"g","key":")", mine, R"(","value":")", value, R"("})"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_FALSE(G(0)->replica_store()->Get(mine).has_value());
  EXPECT_EQ(StatsOf(0).replicas_refused, 3);

  // Bad input: as Set's.
  r = RawGrpcCall(channel, kReplicateMethod, R"({"group":"g","key":"bad","value":"","ttl_ms":-5})");
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r = RawGrpcCall(channel, kReplicateMethod, R"({"group":"nope","key":"k","value":""})");
  EXPECT_THAT(r.body, HasSubstr("unknown group"));
  r = RawGrpcCall(channel, kSetReplicaMethod, R"({"group":"nope","key":"k","value":""})");
  EXPECT_EQ(r.body, "{}");
  r = RawGrpcCall(channel, kReplicateMethod, R"({"group":"g","key":)");
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

INSTANTIATE_TEST_SUITE_P(Transports, ReplicationTest,
                         ::testing::Values(PeerTransport::kLean, PeerTransport::kGrpc),
                         [](const auto& info) {
                           return std::string(PeerTransportName(info.param));
                         });

}  // namespace
}  // namespace lcache
