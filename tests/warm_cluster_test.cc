// The warm cluster over the wire (docs/PROTOCOL.md, section 8): Nodes in one
// process over loopback, on each transport. A node that joins peeks at the
// previous owners' copies instead of loading; a node that stops hands its
// entries to their heirs, and when it comes back it peeks at them; Peek and
// Handoff called by a raw gRPC client behave as the contract says. Each
// scenario also runs with the features off, where the same reads load.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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

class WarmClusterTest : public ThreeNodeTest {
 protected:
  void StartNode(int i, const std::vector<std::string>& ring, bool warm) {
    NodeOptions options = BaseOptions(i, ring);
    options.ring.warmup = warm ? absl::Seconds(600) : absl::ZeroDuration();
    options.handoff_bytes = warm ? int64_t{64} << 20 : 0;
    Start(i, std::move(options));
  }
  // The others learn the new ring, as etcd's watch would tell them.
  void SetRing(const std::vector<std::string>& ring, int except = -1) {
    for (int i = 0; i < 3; ++i) {
      if (i == except || nodes_[i] == nullptr) continue;
      ASSERT_TRUE(nodes_[i]->SetPeers(ring).ok());
    }
  }
  // The keys node 2 took over that ReadAll reads through a node other than
  // their owner before the join: those miss on node 2 (read there, or
  // forwarded there). The previous owner serves its own copy of the others.
  int ColdReadsAfterJoin() const {
    const HashRing before(RingKind::kGroupcache, Ring({0, 1}));
    const HashRing after(RingKind::kGroupcache, Ring({0, 1, 2}));
    int n = 0;
    for (int k = 0; k < kKeys; ++k) {
      const std::string key = absl::StrCat("key-", k);
      n += after.Owner(key) == addresses_[2] && before.Owner(key) != addresses_[k % 3];
    }
    return n;
  }
  // A node joins a warm two-node cluster; returns the loads the re-read cost.
  int JoinAndReadAgain(bool warm) {
    StartNode(0, Ring({0, 1}), warm);
    StartNode(1, Ring({0, 1}), warm);
    ReadAll();
    EXPECT_EQ(loads_, kKeys);  // one load per key, cluster-wide
    StartNode(2, Ring({0, 1, 2}), warm);
    SetRing(Ring({0, 1, 2}), 2);
    const int before = loads_;
    ReadAll();
    return loads_ - before;
  }
};

TEST_P(WarmClusterTest, AJoiningNodePeeksInsteadOfLoading) {
  const int reloaded = JoinAndReadAgain(/*warm=*/true);
  ASSERT_GT(ColdReadsAfterJoin(), 10);
  EXPECT_EQ(reloaded, 0);
  EXPECT_EQ(StatsOf(2).peek_hits, ColdReadsAfterJoin());
  EXPECT_EQ(StatsOf(2).peek_misses, 0);
  EXPECT_EQ(StatsOf(0).peeks_served + StatsOf(1).peeks_served, StatsOf(2).peek_hits);
}

TEST_P(WarmClusterTest, WithoutWarmUpTheKeysThatMovedAreLoadedAgain) {
  const int reloaded = JoinAndReadAgain(/*warm=*/false);
  EXPECT_EQ(reloaded, ColdReadsAfterJoin());
  EXPECT_EQ(StatsOf(2).peek_hits + StatsOf(2).peek_misses, 0);
}

// Node 2 stops (its hand-off), the others drop it, it starts again and they
// take it back: no key is loaded twice.
TEST_P(WarmClusterTest, ARestartedNodeLosesNothing) {
  for (int i = 0; i < 3; ++i) StartNode(i, Ring({0, 1, 2}), /*warm=*/true);
  ReadAll();
  ASSERT_EQ(loads_, kKeys);
  const int owned = KeysOwnedBy(2, Ring({0, 1, 2}));

  nodes_[2]->Stop();
  EXPECT_EQ(StatsOf(2).handoff_entries_sent, owned);
  nodes_[2].reset();
  EXPECT_EQ(StatsOf(0).handoffs_kept + StatsOf(1).handoffs_kept, owned);
  SetRing(Ring({0, 1}));
  ReadAll();
  EXPECT_EQ(loads_, kKeys) << "keys of the stopped node were loaded again";

  StartNode(2, Ring({0, 1, 2}), /*warm=*/true);
  SetRing(Ring({0, 1, 2}), 2);
  ReadAll();
  EXPECT_EQ(loads_, kKeys) << "keys of the restarted node were loaded again";
  EXPECT_GT(StatsOf(2).peek_hits, 0);
  EXPECT_EQ(StatsOf(2).peek_misses, 0);
}

TEST_P(WarmClusterTest, WithoutHandOffAStoppedNodesKeysAreLoadedAgain) {
  for (int i = 0; i < 3; ++i) StartNode(i, Ring({0, 1, 2}), /*warm=*/false);
  ReadAll();
  nodes_[2]->Stop();
  nodes_[2].reset();
  SetRing(Ring({0, 1}));
  ReadAll();
  EXPECT_EQ(loads_, kKeys + KeysOwnedBy(2, Ring({0, 1, 2})));
}

// --- The methods, as a foreign client calls them --------------------------------

class WarmWireTest : public WarmClusterTest {
 protected:
  void SetUp() override {
    WarmClusterTest::SetUp();
    StartNode(0, {}, /*warm=*/true);
    channel_ = grpc::CreateChannel(addresses_[0], grpc::InsecureChannelCredentials());
  }
  RawResult Call(const char* method, const std::string& body) {
    return RawGrpcCall(channel_, method, body);
  }
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_P(WarmWireTest, PeekAnswersAStoredCopyAndNeverLoads) {
  ASSERT_TRUE(nodes_[0]->group("g")->Get("held").ok());
  RawResult r = Call(kPeekMethod, R"({"group":"g","key":"held"})");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_THAT(r.body, HasSubstr(absl::StrCat(R"("value":")", absl::Base64Escape("held@1"), "\"")));
  EXPECT_THAT(r.body, HasSubstr(R"("ttl_ms":)"));

  for (const char* body : {R"({"group":"g","key":"absent"})", R"({"group":"nope","key":"held"})",
                           R"({"group":"g","key":""})"}) {
    r = Call(kPeekMethod, body);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.body, R"({"err":"lru_cache: key not found"})") << body;
  }
  r = Call(kPeekMethod, R"({"group":"g","key":)");
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(loads_, 1);
  EXPECT_EQ(StatsOf(0).peeks_served, 1);
}

TEST_P(WarmWireTest, HandoffKeepsAValueOnlyWhereNoneIsHeld) {
  const std::string value = absl::Base64Escape("given");
  RawResult r = Call(kHandoffMethod,
                     absl::StrCat(R"({"group":"g","key":"new","value":")", value, R"(","ttl_ms":60000})"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.body, "{}");
  EXPECT_EQ(nodes_[0]->group("g")->Get("new")->ToString(), "given");

  ASSERT_TRUE(nodes_[0]->group("g")->Get("held").ok());
  r = Call(kHandoffMethod, absl::StrCat(R"({"group":"g","key":"held","value":")", value, R"("})"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(nodes_[0]->group("g")->Get("held")->ToString(), "held@1");
  EXPECT_EQ(StatsOf(0).handoffs_kept, 1);
  EXPECT_EQ(StatsOf(0).handoffs_refused, 1);

  r = Call(kHandoffMethod, R"({"group":"g","key":"bad","value":"","ttl_ms":-5})");
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("ttl_ms"));
  r = Call(kHandoffMethod, R"({"group":"g","key":"bad","value":"","ttl_ms":1000000000000000})");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_THAT(r.body, HasSubstr("over the limit"));
  r = Call(kHandoffMethod, R"({"group":"nope","key":"k","value":""})");
  EXPECT_THAT(r.body, HasSubstr("unknown group"));
  EXPECT_FALSE(nodes_[0]->group("g")->Peek("bad").has_value());
}

INSTANTIATE_TEST_SUITE_P(Transports, WarmClusterTest,
                         ::testing::Values(PeerTransport::kLean, PeerTransport::kGrpc),
                         [](const auto& info) {
                           return std::string(PeerTransportName(info.param));
                         });
INSTANTIATE_TEST_SUITE_P(Transports, WarmWireTest,
                         ::testing::Values(PeerTransport::kLean, PeerTransport::kGrpc),
                         [](const auto& info) {
                           return std::string(PeerTransportName(info.param));
                         });

}  // namespace
}  // namespace lcache
