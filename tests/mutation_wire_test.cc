// Set, Remove and Invalidate over the wire (docs/PROTOCOL.md, section 6):
// three Nodes in one process over loopback, on each transport, called by a
// raw gRPC client with hand-written JSON as a foreign client would. The
// owner applies the change and every other node drops its copies before
// the answer; bad input changes nothing; a dead node is named.

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
#include "loopback.h"

namespace lcache {
namespace {

using ::lcache::testing::RawGrpcCall;
using ::lcache::testing::RawResult;
using ::lcache::testing::UnusedPorts;
using ::testing::HasSubstr;

class MutationWireTest : public ::testing::TestWithParam<PeerTransport> {
 protected:
  void SetUp() override {
    for (int port : UnusedPorts(4)) addresses_.push_back(absl::StrCat("127.0.0.1:", port));
  }

  // Starts nodes 0..2 with `ring` as their peers (it may list an address
  // nothing listens on).
  void StartAll(const std::vector<std::string>& ring) {
    ring_ = ring;
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(OptionsFor(i, ring));
      ASSERT_TRUE(node.ok()) << node.status();
      nodes_.push_back(*std::move(node));
      channels_.push_back(grpc::CreateChannel(addresses_[i], grpc::InsecureChannelCredentials()));
    }
  }

  NodeOptions OptionsFor(int i, const std::vector<std::string>& ring) {
    return {.address = addresses_[i],
            .groups = {{.name = "g",
                        .cache_bytes = 1 << 20,
                        .getter = [this](std::string_view key) -> absl::StatusOr<Loaded> {
                          ++loads_;
                          return ByteView::Copy(absl::StrCat(
                              absl::string_view(key.data(), key.size()), "@", version_.load()));
                        },
                        .hot_promotion = HotPromotion::kFrequency}},
            .peers = ring,
            .transport = GetParam(),
            .peer_timeout = absl::Seconds(3)};
  }

  int OwnerIndex(std::string_view key) const {
    const HashRing ring(RingKind::kGroupcache, ring_);
    const std::string_view owner = ring.Owner(key);
    for (int i = 0; i < static_cast<int>(addresses_.size()); ++i) {
      if (addresses_[i] == owner) return i;
    }
    return -1;
  }
  // A key whose owner is node `owner`.
  std::string KeyOwnedBy(int owner) const {
    for (int i = 0;; ++i) {
      std::string key = absl::StrCat("key-", i);
      if (OwnerIndex(key) == owner) return key;
    }
  }

  std::string Get(int node, const std::string& key) {
    absl::StatusOr<ByteView> v = nodes_[node]->group("g")->Get(key);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? v->ToString() : "";
  }
  // Every node gets `key` twice, so that the non-owners keep a hot copy.
  void CopyEverywhere(const std::string& key) {
    for (int i = 0; i < 3; ++i) Get(i, key), Get(i, key);
    for (int i = 0; i < 3; ++i) {
      if (i == OwnerIndex(key)) continue;
      ASSERT_TRUE(nodes_[i]->group("g")->hot_store()->Get(key).has_value()) << "node " << i;
    }
  }

  RawResult Call(int node, const char* method, const std::string& body) {
    return RawGrpcCall(channels_[node], method, body);
  }
  static std::string SetBody(const std::string& key, const std::string& value) {
    return absl::StrCat(R"({"group":"g","key":")", key, R"(","value":")", absl::Base64Escape(value),
                        R"("})");
  }

  std::vector<std::string> addresses_;
  std::vector<std::string> ring_;
  std::atomic<int> version_{1};
  std::atomic<int> loads_{0};
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<Node>> nodes_;  // last: stop before the getter's state goes
};

TEST_P(MutationWireTest, ASetThroughAnyNodeIsSeenOnEveryNode) {
  StartAll({addresses_[0], addresses_[1], addresses_[2]});
  const std::string key = KeyOwnedBy(1);
  CopyEverywhere(key);

  RawResult r = Call(0, kSetMethod, SetBody(key, "new"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.body, "{}");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Get(i, key), "new") << "node " << i;
  EXPECT_EQ(nodes_[1]->group("g")->Stats().invalidations_sent, 2);
  EXPECT_EQ(nodes_[0]->group("g")->Stats().sets, 1);
  EXPECT_EQ(nodes_[1]->group("g")->Stats().sets, 0);  // counted where the client called
  EXPECT_GE(nodes_[2]->group("g")->Stats().invalidations_received, 1);
  EXPECT_EQ(loads_, 1);
}

TEST_P(MutationWireTest, ARemoveThroughAnyNodeDropsEveryCopy) {
  StartAll({addresses_[0], addresses_[1], addresses_[2]});
  const std::string key = KeyOwnedBy(0);
  CopyEverywhere(key);
  version_ = 2;
  RawResult r = Call(2, kRemoveMethod, absl::StrCat(R"({"group":"g","key":")", key, R"("})"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.body, "{}");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Get(i, key), key + "@2") << "node " << i;
  EXPECT_EQ(loads_, 2);
  // A key nobody holds.
  r = Call(1, kRemoveMethod, R"({"group":"g","key":"never-read"})");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.body, "{}");
}

TEST_P(MutationWireTest, TheTtlTravelsToTheOwner) {
  StartAll({addresses_[0], addresses_[1], addresses_[2]});
  const std::string key = KeyOwnedBy(2);
  RawResult r =
      Call(0, kSetMethod,
           absl::StrCat(R"({"group":"g","key":")", key, R"(","value":"dg==","ttl_ms":60000})"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  std::optional<ExpiringValue> v = nodes_[2]->group("g")->GetIfCached(key);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->value.ToString(), "v");
  EXPECT_GT(v->expire_at, absl::Now() + absl::Seconds(50));
  EXPECT_LT(v->expire_at, absl::Now() + absl::Seconds(61));
}

TEST_P(MutationWireTest, BadInputGetsAClearErrorAndChangesNothing) {
  StartAll({addresses_[0], addresses_[1], addresses_[2]});
  const std::string key = KeyOwnedBy(1);
  CopyEverywhere(key);
  const std::string prefix = absl::StrCat(R"({"group":"g","key":")", key, R"(")");
  struct Case {
    const char* method;
    std::string body;
    grpc::StatusCode code;  // OK: an in-band error
    std::string says;
  };
  const std::vector<Case> cases = {
      {kSetMethod, prefix + R"(,"value":)", grpc::StatusCode::INVALID_ARGUMENT, "not valid JSON"},
      {kSetMethod, prefix + R"(,"value":"not base64!"})", grpc::StatusCode::INVALID_ARGUMENT,
       "base64"},
      {kSetMethod, prefix + R"(,"value":"dg==","ttl_ms":-5})", grpc::StatusCode::INVALID_ARGUMENT,
       "ttl_ms"},
      {kSetMethod, prefix + R"(,"value":"dg==","ttl_ms":"5"})", grpc::StatusCode::INVALID_ARGUMENT,
       "ttl_ms"},
      {kSetMethod, prefix + R"(,"value":"dg==","ttl_ms":1000000000000000})", grpc::StatusCode::OK,
       "over the limit"},
      {kSetMethod, R"({"group":"nope","key":"k","value":"dg=="})", grpc::StatusCode::OK,
       "unknown group"},
      {kRemoveMethod, R"({"group":"nope","key":"k"})", grpc::StatusCode::OK, "unknown group"},
      {kSetMethod, R"({"group":"g","key":"","value":"dg=="})", grpc::StatusCode::OK,
       kEmptyKeyMessage},
      {kRemoveMethod, R"({"group":"g","key":""})", grpc::StatusCode::OK, kEmptyKeyMessage},
      {kRemoveMethod, absl::StrCat(R"({"group":"g","key":")", std::string(5000, 'k'), R"("})"),
       grpc::StatusCode::INVALID_ARGUMENT, "key too long"},
      {kRemoveMethod, R"([1,2])", grpc::StatusCode::INVALID_ARGUMENT, "must be a JSON object"},
  };
  for (int node = 0; node < 3; ++node) {
    for (const Case& c : cases) {
      RawResult r = Call(node, c.method, c.body);
      EXPECT_EQ(r.status.error_code(), c.code) << c.body << ": " << r.status.error_message();
      if (c.code == grpc::StatusCode::OK) {
        EXPECT_THAT(r.body, HasSubstr(R"({"err":")")) << c.body;
        EXPECT_THAT(r.body, HasSubstr(c.says)) << c.body;
      } else {
        EXPECT_THAT(r.status.error_message(), HasSubstr(c.says)) << c.body;
      }
    }
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Get(i, key), key + "@1") << "node " << i;
    EXPECT_EQ(nodes_[i]->group("g")->Stats().invalidations_sent, 0);
    if (i != OwnerIndex(key)) {
      EXPECT_TRUE(nodes_[i]->group("g")->hot_store()->Get(key).has_value()) << "node " << i;
    }
  }
  EXPECT_EQ(loads_, 1);
}

// Node 3 is on the ring but down: the owner lists it and still answers; a
// key it owns cannot be changed, and the error names it.
TEST_P(MutationWireTest, ADeadNodeIsListedAndItsKeysCannotChange) {
  StartAll(addresses_);
  const std::string mine = KeyOwnedBy(0);
  RawResult r = Call(1, kSetMethod, SetBody(mine, "v"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.body, absl::StrCat(R"({"unacked":[")", addresses_[3], R"("]})"));
  EXPECT_EQ(Get(1, mine), "v");
  EXPECT_EQ(nodes_[0]->group("g")->Stats().invalidations_unacked, 1);

  const std::string dead = KeyOwnedBy(3);
  r = Call(1, kRemoveMethod, absl::StrCat(R"({"group":"g","key":")", dead, R"("})"));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_THAT(r.status.error_message(), HasSubstr(addresses_[3]));
  EXPECT_EQ(nodes_[1]->group("g")->Stats().invalidations_sent, 0);
}

// A peer's Invalidate for a group this node does not serve: nothing to drop.
TEST_P(MutationWireTest, InvalidateIsAnsweredAtOnce) {
  StartAll({addresses_[0], addresses_[1], addresses_[2]});
  const std::string key = KeyOwnedBy(1);
  CopyEverywhere(key);
  RawResult r = Call(0, kInvalidateMethod, absl::StrCat(R"({"group":"g","key":")", key, R"("})"));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.body, "{}");
  EXPECT_FALSE(nodes_[0]->group("g")->GetIfCached(key).has_value());
  EXPECT_TRUE(nodes_[1]->group("g")->GetIfCached(key).has_value());  // only node 0 was told
  r = Call(0, kInvalidateMethod, R"({"group":"other","key":"k"})");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.body, "{}");
}

INSTANTIATE_TEST_SUITE_P(Transports, MutationWireTest,
                         ::testing::Values(PeerTransport::kLean, PeerTransport::kGrpc),
                         [](const ::testing::TestParamInfo<PeerTransport>& info) {
                           return std::string(PeerTransportName(info.param)) == "lean" ? "Lean"
                                                                                       : "Grpc";
                         });

}  // namespace
}  // namespace lcache
