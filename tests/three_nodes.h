// A fixture for tests of ring changes over the wire: three Nodes in this
// process, on loopback ports picked at SetUp, on the transport the test is
// instantiated with. Each serves group "g", whose getter counts its loads
// and returns "KEY@VERSION". warm_cluster_test and replication_test build on
// it.

#ifndef LCACHE_TESTS_THREE_NODES_H_
#define LCACHE_TESTS_THREE_NODES_H_

#include <atomic>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lcache/clock.h"
#include "lcache/hash_ring.h"
#include "lcache/node.h"
#include "loopback.h"

namespace lcache::testing {

class ThreeNodeTest : public ::testing::TestWithParam<PeerTransport> {
 protected:
  static constexpr int kKeys = 300;

  void SetUp() override {
    for (int port : UnusedPorts(3)) addresses_.push_back(absl::StrCat("127.0.0.1:", port));
    nodes_.resize(3);
  }

  // Node `i` on `ring`, its group timed by the real clock or `clock_`; the
  // caller adds what its test is about.
  NodeOptions BaseOptions(int i, std::vector<std::string> ring, bool manual_clock = false) {
    return NodeOptions{
        .address = addresses_[i],
        .groups = {{.name = "g",
                    .cache_bytes = 4 << 20,
                    .getter = [this](std::string_view key) -> absl::StatusOr<Loaded> {
                      ++loads_;
                      return ByteView::Copy(absl::StrCat(absl::string_view(key.data(), key.size()),
                                                         "@", version_.load()));
                    },
                    .default_ttl = absl::Seconds(600),
                    .hot_cache_bytes = 0,
                    .clock = manual_clock ? &clock_ : nullptr}},
        .peers = std::move(ring),
        .transport = GetParam(),
        .peer_timeout = absl::Seconds(3)};
  }
  void Start(int i, NodeOptions options) {
    absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(std::move(options));
    ASSERT_TRUE(node.ok()) << node.status();
    nodes_[i] = *std::move(node);
  }
  std::vector<std::string> Ring(std::initializer_list<int> members) const {
    std::vector<std::string> ring;
    for (int i : members) ring.push_back(addresses_[i]);
    return ring;
  }
  // Reads every key once, through the live nodes in turn; checks each value.
  void ReadAll(const std::string& version = "1") {
    std::vector<Node*> live;
    for (auto& n : nodes_) {
      if (n != nullptr) live.push_back(n.get());
    }
    for (int k = 0; k < kKeys; ++k) {
      const std::string key = absl::StrCat("key-", k);
      absl::StatusOr<ByteView> v = live[k % live.size()]->group("g")->Get(key);
      ASSERT_TRUE(v.ok()) << key << ": " << v.status();
      EXPECT_EQ(v->ToString(), key + "@" + version);
    }
  }
  int KeysOwnedBy(int i, const std::vector<std::string>& ring) const {
    const HashRing hash_ring(RingKind::kGroupcache, ring);
    int n = 0;
    for (int k = 0; k < kKeys; ++k) n += hash_ring.Owner(absl::StrCat("key-", k)) == addresses_[i];
    return n;
  }
  Group* G(int i) { return nodes_[i]->group("g"); }
  GroupStats StatsOf(int i) { return G(i)->Stats(); }

  // Before nodes_: the nodes' groups may read it until they stop.
  ManualClock clock_{absl::FromUnixSeconds(1'700'000'000)};
  std::vector<std::string> addresses_;
  std::atomic<int> version_{1};
  std::atomic<int> loads_{0};
  std::vector<std::unique_ptr<Node>> nodes_;  // last: stop before the getter's state goes
};

}  // namespace lcache::testing

#endif  // LCACHE_TESTS_THREE_NODES_H_
