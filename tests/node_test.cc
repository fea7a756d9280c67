// Node (lcache/node.h): three nodes in one process over loopback, on the
// lean transport. Routing (each key loaded once, by its owner on the
// groupcache ring), a peer-set change, draining with a call in flight, a
// dead peer, and start errors. The same composition runs as real
// processes in cluster_test.py.

#include "lcache/node.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gate.h"
#include "loopback.h"
#include "gtest/gtest.h"
#include "lcache/h2_peer.h"
#include "lcache/hash_ring.h"

namespace lcache {
namespace {

using ::lcache::testing::AwaitTrue;
using ::lcache::testing::Gate;
using ::lcache::testing::UnusedPorts;

// Whether a connection to 127.0.0.1:port is refused (nothing listens).
bool Refused(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool refused = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0;
  close(fd);
  return refused;
}

std::string ValueOf(std::string_view key) { return "value-of-" + std::string(key); }

class NodeTest : public ::testing::Test {
 protected:
  // Every getter call, by node address.
  struct Loads {
    std::mutex mu;
    std::map<std::string, std::multiset<std::string>> by_node;
  };

  void SetUp() override {
    for (int port : UnusedPorts(3)) addresses_.push_back(absl::StrCat("127.0.0.1:", port));
  }

  NodeOptions OptionsFor(int i, std::vector<std::string> peers) {
    const std::string self = addresses_[i];
    return {
        .address = self,
        .groups = {{.name = "g",
                    .cache_bytes = 1 << 20,
                    .getter = [this, self](std::string_view key) -> absl::StatusOr<Loaded> {
                      {
                        std::lock_guard lock(loads_.mu);
                        loads_.by_node[self].insert(std::string(key));
                      }
                      if (key.starts_with("slow")) slow_gate_.Wait();
                      return ByteView::Copy(ValueOf(key));
                    },
                    // No hot copies: every Get on a non-owner asks the owner.
                    .hot_cache_bytes = 0}},
        .peers = std::move(peers),
        .io_threads = io_threads_,
        .peer_timeout = absl::Seconds(5),
        .load_threads = load_threads_,
        .grace = absl::Seconds(5),
    };
  }

  void StartAll(const std::vector<std::string>& peers) {
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(OptionsFor(i, peers));
      ASSERT_TRUE(node.ok()) << node.status();
      nodes_.push_back(*std::move(node));
    }
  }

  // Who loaded `key` (a node twice if it loaded it twice).
  std::multiset<std::string> LoadersOf(const std::string& key) {
    std::lock_guard lock(loads_.mu);
    std::multiset<std::string> out;
    for (const auto& [node, keys] : loads_.by_node) {
      for (size_t n = keys.count(key); n > 0; --n) out.insert(node);
    }
    return out;
  }

  std::string OwnerOf(const std::vector<std::string>& ring, std::string_view key) {
    return std::string(HashRing(RingKind::kGroupcache, ring).Owner(key));
  }

  void ExpectGet(Node& node, const std::string& key) {
    absl::StatusOr<ByteView> v = node.group("g")->Get(key);
    ASSERT_TRUE(v.ok()) << key << ": " << v.status();
    EXPECT_EQ(v->view(), ValueOf(key));
  }

  std::vector<std::string> addresses_;
  int io_threads_ = 1;
  int load_threads_ = 8;
  Loads loads_;
  Gate slow_gate_;
  // Declared last: the nodes stop before the getters' state goes.
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(NodeTest, EachKeyIsLoadedOnceByItsOwner) {
  StartAll(addresses_);
  std::vector<std::string> keys;
  for (int i = 0; i < 60; ++i) keys.push_back(absl::StrCat("key-", i));

  for (const std::string& key : keys) {
    for (auto& node : nodes_) ExpectGet(*node, key);  // a miss on the first, hits after
  }
  std::set<std::string> owners;
  for (const std::string& key : keys) {
    const std::string owner = OwnerOf(addresses_, key);
    owners.insert(owner);
    EXPECT_EQ(LoadersOf(key), std::multiset<std::string>{owner}) << key;
  }
  EXPECT_EQ(owners.size(), 3u) << "60 keys should spread over all three nodes";

  // The non-owners asked the owner: every key not owned by node 0 was a peer
  // load there, and the owners counted the requests.
  int64_t forwarded_by_0 = 0, served = 0;
  for (const std::string& key : keys) forwarded_by_0 += OwnerOf(addresses_, key) != addresses_[0];
  EXPECT_EQ(nodes_[0]->group("g")->Stats().peer_loads, forwarded_by_0);
  for (auto& node : nodes_) served += node->group("g")->Stats().server_requests;
  EXPECT_EQ(served, 2 * static_cast<int64_t>(keys.size()));  // two non-owners per key
  for (auto& node : nodes_) EXPECT_EQ(node->group("g")->Stats().peer_errors, 0);
}

// Clients' requests for one key owned by another node, arriving on both of
// node 0's I/O threads at once: they meet in one flight (one peer call, one
// load on the owner), the peer call is answered on one loop and the waiters
// on the other loop get their replies posted. Under TSan this is the
// asynchronous path's race check.
TEST_F(NodeTest, ClientRequestsOnTwoLoopsShareOneForwardedLoad) {
  io_threads_ = 2;
  StartAll(addresses_);
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const std::string k = absl::StrCat("slow-", i);
    if (OwnerOf(addresses_, k) == addresses_[1]) key = k;
  }
  // A client with two loops opens two connections: node 0 deals them to its
  // two loops.
  absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create(2);
  ASSERT_TRUE(client.ok()) << client.status();
  std::shared_ptr<PeerGetter> to_node0 =
      (*client)->NewGetter(addresses_[0], {.timeout = absl::Seconds(10), .mark_forwarded = false});
  constexpr int kCallers = 20;
  std::vector<std::thread> callers;
  std::atomic<int> ok{0};
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&] {
      absl::StatusOr<PeerValue> v = to_node0->Get("g", key);
      if (v.ok() && v->value.view() == ValueOf(key)) ++ok;
    });
  }
  Group* g0 = nodes_[0]->group("g");
  // Every request has joined (a miss each), and the owner's getter holds the load.
  ASSERT_TRUE(AwaitTrue([&] { return g0->Stats().loads == kCallers; }));
  slow_gate_.AwaitWaiters(1);
  slow_gate_.Open();
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(ok, kCallers);
  EXPECT_EQ(LoadersOf(key), std::multiset<std::string>{addresses_[1]});
  EXPECT_EQ(g0->Stats().loads_deduped, 1);  // one peer call for the twenty
  EXPECT_EQ(g0->Stats().peer_loads, 1);
  EXPECT_EQ(nodes_[1]->group("g")->Stats().server_requests, 1);
}

// A client that gives up on a forwarded miss costs no load anywhere: its
// stream reset on node 0 resets node 0's call to the owner, and the owner
// drops the load it had queued for it.
TEST_F(NodeTest, AClientThatLeavesCancelsTheLoadAcrossTheHop) {
  load_threads_ = 1;
  StartAll(addresses_);
  std::vector<std::string> owned_by_1;
  for (int i = 0; owned_by_1.size() < 2; ++i) {
    const std::string k = absl::StrCat("slow-", i);
    if (OwnerOf(addresses_, k) == addresses_[1]) owned_by_1.push_back(k);
  }
  const std::string& busy = owned_by_1[0];
  const std::string& left = owned_by_1[1];
  std::string barrier;  // a key of node 1's that loads at once (not "slow")
  for (int i = 0; barrier.empty(); ++i) {
    const std::string k = absl::StrCat("barrier-", i);
    if (OwnerOf(addresses_, k) == addresses_[1]) barrier = k;
  }
  absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create();
  ASSERT_TRUE(client.ok()) << client.status();
  const PeerClientOptions as_client{.timeout = absl::Seconds(10), .mark_forwarded = false};
  std::shared_ptr<PeerGetter> to_node0 = (*client)->NewGetter(addresses_[0], as_client);
  ASSERT_TRUE(to_node0->Get("g", barrier).ok());  // cached on node 1 from now on
  // Node 1's only load thread is held by `busy`.
  std::thread holder([&] {
    EXPECT_TRUE((*client)->NewGetter(addresses_[1], as_client)->Get("g", busy).ok());
  });
  slow_gate_.AwaitWaiters(1);
  // `left`, asked of node 0, is forwarded to node 1 and queued there.
  std::atomic<bool> answered{false};
  absl::Status answer;
  PeerGetter::Cancel cancel;
  ASSERT_TRUE(to_node0->StartGet(
      "g", left, absl::InfiniteFuture(),
      [&](absl::StatusOr<PeerValue> v) {
        answer = v.status();
        answered = true;
      },
      &cancel));
  Group* g0 = nodes_[0]->group("g");
  Group* g1 = nodes_[1]->group("g");
  ASSERT_TRUE(AwaitTrue([&] { return g1->Stats().server_requests == 3; }));
  cancel();
  ASSERT_TRUE(AwaitTrue([&] { return answered.load(); }));
  EXPECT_TRUE(absl::IsCancelled(answer)) << answer;
  // Node 0 reset its call to node 1 (no fallback load of its own)...
  ASSERT_TRUE(AwaitTrue([&] { return g0->Stats().loads_cancelled == 1; }));
  // A barrier: a hit on node 1 through node 0's connection to it, whose
  // frames follow the reset, so node 1 has seen the reset...
  ASSERT_TRUE(to_node0->Get("g", barrier).ok());
  // ...and node 1 drops the queued load once its load thread is free.
  slow_gate_.Open();
  holder.join();
  ASSERT_TRUE(AwaitTrue([&] { return g1->Stats().loads_cancelled == 1; }));
  EXPECT_TRUE(LoadersOf(left).empty());
  EXPECT_EQ(g0->Stats().peer_errors, 0);
}

TEST_F(NodeTest, APeerSetChangeMovesKeysToTheirNewOwners) {
  // Each node alone at first: everything is local.
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(OptionsFor(i, {addresses_[i]}));
    ASSERT_TRUE(node.ok()) << node.status();
    nodes_.push_back(*std::move(node));
  }
  // A key the full ring gives to node 2.
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const std::string k = absl::StrCat("moving-", i);
    if (OwnerOf(addresses_, k) == addresses_[2]) key = k;
  }
  ExpectGet(*nodes_[0], key);
  EXPECT_EQ(LoadersOf(key), std::multiset<std::string>{addresses_[0]});

  for (auto& node : nodes_) {
    absl::StatusOr<RingPicker::Change> change = node->SetPeers(addresses_);
    ASSERT_TRUE(change.ok()) << change.status();
    EXPECT_EQ(change->added.size(), 2u);
  }
  EXPECT_EQ(nodes_[0]->picker().Peers().size(), 3u);
  // Node 1 has never seen the key: it asks node 2, which loads it.
  ExpectGet(*nodes_[1], key);
  EXPECT_EQ(LoadersOf(key), (std::multiset<std::string>{addresses_[0], addresses_[2]}));

  // Node 2 leaves the others' rings: its keys go to node 0 or node 1.
  const std::vector<std::string> two(addresses_.begin(), addresses_.begin() + 2);
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<RingPicker::Change> change = nodes_[i]->SetPeers(two);
    ASSERT_TRUE(change.ok());
    EXPECT_EQ(change->removed, std::vector<std::string>{addresses_[2]});
  }
  std::string orphan;
  for (int i = 0; orphan.empty(); ++i) {
    const std::string k = absl::StrCat("orphan-", i);
    if (OwnerOf(addresses_, k) == addresses_[2]) orphan = k;
  }
  ExpectGet(*nodes_[1], orphan);
  EXPECT_EQ(LoadersOf(orphan), std::multiset<std::string>{OwnerOf(two, orphan)});
}

TEST_F(NodeTest, StopDrainsACallInFlightThenItsKeysLoadElsewhere) {
  StartAll(addresses_);
  Node& asker = *nodes_[0];
  Node& owner = *nodes_[1];
  std::string slow, later;
  for (int i = 0; slow.empty() || later.empty(); ++i) {
    const std::string k = absl::StrCat("slow-", i);
    if (OwnerOf(addresses_, k) != owner.address()) continue;
    (slow.empty() ? slow : later) = k;
  }
  EXPECT_TRUE(owner.ready());

  // A forwarded Get holds the owner's getter.
  std::thread in_flight([&] { ExpectGet(asker, slow); });
  slow_gate_.AwaitWaiters(1);
  std::thread stopping([&] { owner.Stop(); });
  EXPECT_TRUE(AwaitTrue([&] { return !owner.ready(); })) << "still ready while draining";
  // The owner has stopped accepting while the call is still in its getter...
  EXPECT_TRUE(AwaitTrue([&] { return Refused(owner.port()); })) << "still accepting";
  slow_gate_.Open();  // ...and the call finishes within the grace period: answered, not cut
  in_flight.join();
  stopping.join();
  EXPECT_EQ(LoadersOf(slow), std::multiset<std::string>{owner.address()});
  EXPECT_EQ(asker.group("g")->Stats().peer_errors, 0);

  // The owner is gone: its keys fail over to a local load, without a hang.
  ExpectGet(asker, later);
  EXPECT_EQ(LoadersOf(later), std::multiset<std::string>{asker.address()});
  EXPECT_EQ(asker.group("g")->Stats().peer_errors, 1);
}

TEST_F(NodeTest, StartRefusesOptionsThatCannotWork) {
  NodeOptions both = OptionsFor(0, addresses_);
  both.etcd = EtcdOptions{.endpoints = {"127.0.0.1:1"}};
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(std::move(both));
  EXPECT_TRUE(absl::IsInvalidArgument(node.status())) << node.status();
  EXPECT_NE(node.status().message().find("peers and .etcd exclude each other"), std::string::npos);

  NodeOptions no_groups = OptionsFor(0, {});
  no_groups.groups.clear();
  EXPECT_TRUE(absl::IsInvalidArgument(Node::Start(std::move(no_groups)).status()));

  NodeOptions bad_group = OptionsFor(0, {});
  bad_group.groups[0].getter = nullptr;
  EXPECT_TRUE(absl::IsInvalidArgument(Node::Start(std::move(bad_group)).status()));

  NodeOptions twice = OptionsFor(0, {});
  twice.groups.push_back(OptionsFor(0, {}).groups[0]);
  EXPECT_TRUE(absl::IsInvalidArgument(Node::Start(std::move(twice)).status()));

  // The admin listener starts last: its error comes after the peer server
  // was up, and the failed start must have let the address go.
  NodeOptions bad_admin = OptionsFor(0, {});
  bad_admin.http_address = "no-port";
  node = Node::Start(std::move(bad_admin));
  EXPECT_TRUE(absl::IsInvalidArgument(node.status())) << node.status();
  node = Node::Start(OptionsFor(0, {}));
  ASSERT_TRUE(node.ok()) << node.status();
  ExpectGet(**node, "after-a-failed-start");
}

TEST_F(NodeTest, ATakenAddressIsAnErrorThatNamesIt) {
  StartAll({});
  absl::StatusOr<std::unique_ptr<Node>> second = Node::Start(OptionsFor(0, {}));
  EXPECT_TRUE(absl::IsUnavailable(second.status())) << second.status();
  EXPECT_NE(second.status().message().find(addresses_[0]), std::string::npos) << second.status();
  ExpectGet(*nodes_[0], "still-serving");  // the first node is unharmed
}

// listen_address apart from the ring name, as in a pod: node 1 is known as
// 127.0.0.2:P (its "pod IP") and listens on every address. Node 0 reaches it
// by that name, a client by 127.0.0.1:P (a port-forward), and node 1 routes
// by its ring name: a key it owns loads there, wherever it was asked.
TEST_F(NodeTest, AListenAddressApartFromTheRingNameServesBoth) {
  const int port = UnusedPorts(1)[0];
  const std::vector<std::string> ring = {addresses_[0], absl::StrCat("127.0.0.2:", port)};
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(OptionsFor(0, ring));
  ASSERT_TRUE(node.ok()) << node.status();
  nodes_.push_back(*std::move(node));
  addresses_[1] = ring[1];
  NodeOptions pod = OptionsFor(1, ring);
  pod.listen_address = absl::StrCat("0.0.0.0:", port);
  node = Node::Start(std::move(pod));
  ASSERT_TRUE(node.ok()) << node.status();
  nodes_.push_back(*std::move(node));
  EXPECT_EQ(nodes_[1]->address(), ring[1]);
  EXPECT_EQ(nodes_[1]->port(), port);

  std::string key;  // a key the pod owns
  for (int i = 0; key.empty(); ++i) {
    const std::string k = absl::StrCat("pod-", i);
    if (OwnerOf(ring, k) == ring[1]) key = k;
  }
  ExpectGet(*nodes_[0], key);  // forwarded to 127.0.0.2:P
  ExpectGet(*nodes_[1], key);
  EXPECT_EQ(LoadersOf(key), std::multiset<std::string>{ring[1]});

  // A client through 127.0.0.1:P: the same node, the same cached value.
  absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create(1);
  ASSERT_TRUE(client.ok()) << client.status();
  std::shared_ptr<PeerGetter> forwarded =
      (*client)->NewGetter(absl::StrCat("127.0.0.1:", port), {.timeout = absl::Seconds(5)});
  absl::StatusOr<PeerValue> v = forwarded->Get("g", key);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->value.view(), ValueOf(key));
  EXPECT_EQ(LoadersOf(key), std::multiset<std::string>{ring[1]});
}

// Set and Remove through every node while readers on every node Get the
// same keys, over the lean transport's loops (under TSan: the mutation path's
// race check; the guarantees are consistency_test.py's). Afterwards every
// node answers what the last mutation left.
TEST_F(NodeTest, SetsAndRemovesThroughEveryNodeWhileOthersRead) {
  io_threads_ = 2;
  StartAll(addresses_);
  const std::vector<std::string> keys = {"m-0", "m-1", "m-2", "m-3"};
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int n = 0; n < 3; ++n) {
    readers.emplace_back([&, n] {
      for (int i = 0; !stop.load(); ++i) {
        EXPECT_TRUE(nodes_[n]->group("g")->Get(keys[i % keys.size()]).ok());
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    Group* g = nodes_[i % 3]->group("g");
    const std::string& key = keys[i % keys.size()];
    absl::StatusOr<MutationResult> r =
        i % 2 == 0 ? g->Set(key, absl::StrCat("set-", i)) : g->Remove(key);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->unacknowledged.empty());
  }
  // The last mutation of each key: i = 196..199 (Set, Remove, Set, Remove).
  stop = true;
  for (std::thread& t : readers) t.join();
  for (auto& node : nodes_) {
    EXPECT_EQ(node->group("g")->Get("m-0")->ToString(), "set-196");
    EXPECT_EQ(node->group("g")->Get("m-1")->ToString(), ValueOf("m-1"));
    EXPECT_EQ(node->group("g")->Get("m-2")->ToString(), "set-198");
    EXPECT_EQ(node->group("g")->Get("m-3")->ToString(), ValueOf("m-3"));
  }
}

}  // namespace
}  // namespace lcache
