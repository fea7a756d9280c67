// RingPicker: routing by the HashRing, self handling, getter reuse and
// release across SetPeers, what SetPeers reports, and PickPeer racing
// SetPeers (this file also runs under ThreadSanitizer).

#include "lcache/ring_picker.h"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/clock.h"
#include "lcache/hash_ring.h"
#include "lcache/outlier_ejection.h"

namespace lcache {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A key that the groupcache ring over `ring` gives to `address`.
std::string KeyOwnedBy(const std::vector<std::string>& ring, std::string_view address) {
  const HashRing hash_ring(ring);
  for (int n = 0; n < 100000; ++n) {
    std::string key = "key-" + std::to_string(n);
    if (hash_ring.Owner(key) == address) return key;
  }
  ADD_FAILURE() << "no key owned by " << address;
  return "";
}

constexpr char kSelf[] = "127.0.0.1:9001";
constexpr char kPeer2[] = "127.0.0.1:9002";
constexpr char kPeer3[] = "127.0.0.1:9003";
constexpr char kPeer4[] = "127.0.0.1:9004";

// Counts the getters the factory made and destroyed, per address. The
// destructor may run on any thread that held the last reference.
class Registry {
 public:
  struct Counts {
    int created = 0;
    int destroyed = 0;
  };

  void Created(const std::string& address) {
    std::lock_guard lock(mu_);
    ++counts_[address].created;
  }
  void Destroyed(const std::string& address) {
    std::lock_guard lock(mu_);
    ++counts_[address].destroyed;
  }
  Counts Of(const std::string& address) const {
    std::lock_guard lock(mu_);
    auto it = counts_.find(address);
    return it == counts_.end() ? Counts{} : it->second;
  }
  int Alive(const std::string& address) const {
    Counts c = Of(address);
    return c.created - c.destroyed;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, Counts> counts_;
};

// A peer client that answers with its own address and tells the registry
// when it is destroyed.
class FakeGetter : public PeerGetter {
 public:
  static constexpr uint64_t kLive = 0x11fe11fe11fe11fe;

  FakeGetter(std::string address, Registry* registry)
      : address_(std::move(address)), registry_(registry) {
    registry_->Created(address_);
  }
  ~FakeGetter() override {
    canary_ = 0;
    registry_->Destroyed(address_);
  }

  absl::StatusOr<PeerValue> Get(std::string_view /*group*/, std::string_view /*key*/) override {
    return ByteView::Copy(address_);
  }

  const std::string& address() const { return address_; }
  bool live() const { return canary_ == kLive; }

 private:
  const std::string address_;
  Registry* const registry_;
  uint64_t canary_ = kLive;
};

class RingPickerTest : public ::testing::Test {
 protected:
  // Makes FakeGetters, except for addresses in `reject_` (null) or
  // `throw_on_` (throws). Called by SetPeers, which runs one at a time.
  PeerFactory Factory() {
    return [this](const std::string& address) -> std::shared_ptr<PeerGetter> {
      factory_calls_.push_back(address);
      if (throw_on_.contains(address)) throw std::invalid_argument("bad address " + address);
      if (reject_.contains(address)) return nullptr;
      return std::make_shared<FakeGetter>(address, &registry_);
    };
  }

  // The address of the getter PickPeer returns for `key`; "" for null.
  static std::string PickedAddress(RingPicker& picker, std::string_view key) {
    std::shared_ptr<PeerGetter> getter = picker.PickPeer(key);
    if (getter == nullptr) return "";
    return static_cast<FakeGetter&>(*getter).address();
  }

  int FactoryCallsFor(std::string_view address) const {
    int calls = 0;
    for (const std::string& a : factory_calls_) calls += a == address;
    return calls;
  }

  Registry registry_;
  std::vector<std::string> factory_calls_;
  std::set<std::string, std::less<>> reject_;
  std::set<std::string, std::less<>> throw_on_;
};

TEST_F(RingPickerTest, NoPeersMeansEveryKeyIsLocal) {
  RingPicker picker(kSelf, Factory());
  EXPECT_EQ(picker.self(), kSelf);
  EXPECT_THAT(picker.Peers(), IsEmpty());
  EXPECT_EQ(picker.PickPeer("Tom"), nullptr);
  EXPECT_EQ(picker.PickPeer(""), nullptr);

  picker.SetPeers({kSelf, kPeer2});
  ASSERT_NE(picker.PickPeer(KeyOwnedBy({kSelf, kPeer2}, kPeer2)), nullptr);
  RingPicker::Change change = picker.SetPeers({});
  EXPECT_THAT(change.removed, ElementsAre(kSelf, kPeer2));
  EXPECT_THAT(picker.Peers(), IsEmpty());
  for (int n = 0; n < 100; ++n) EXPECT_EQ(picker.PickPeer("key-" + std::to_string(n)), nullptr);
}

TEST_F(RingPickerTest, KeysGoToTheOwnerTheHashRingNames) {
  const std::vector<std::string> peers = {kSelf, kPeer2, kPeer3};
  RingPicker picker(kSelf, Factory());
  picker.SetPeers(peers);
  EXPECT_EQ(picker.Peers(), peers);

  // The contract's reference owners (hash_ring_test.cc): Tom is ours, Sam
  // is 9002's, key-0 is 9003's.
  EXPECT_EQ(picker.PickPeer("Tom"), nullptr);
  EXPECT_EQ(PickedAddress(picker, "Sam"), kPeer2);
  EXPECT_EQ(PickedAddress(picker, "key-0"), kPeer3);

  const HashRing ring(peers);
  int local = 0, remote = 0;
  for (int n = 0; n < 3000; ++n) {
    const std::string key = "key-" + std::to_string(n);
    const std::string_view owner = ring.Owner(key);
    if (owner == kSelf) {
      ASSERT_EQ(picker.PickPeer(key), nullptr) << key;
      ++local;
    } else {
      ASSERT_EQ(PickedAddress(picker, key), owner) << key;
      ++remote;
    }
  }
  EXPECT_GT(local, 500);
  EXPECT_GT(remote, 1000);
  // One client per peer, none for self.
  EXPECT_THAT(factory_calls_, ElementsAre(kPeer2, kPeer3));
}

TEST_F(RingPickerTest, PickedGetterIsUsable) {
  RingPicker picker(kSelf, Factory());
  picker.SetPeers({kSelf, kPeer2});
  std::shared_ptr<PeerGetter> getter = picker.PickPeer("Sam");
  ASSERT_NE(getter, nullptr);
  absl::StatusOr<PeerValue> v = getter->Get("scores", "Sam");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->value.view(), kPeer2);
}

TEST_F(RingPickerTest, SelfMissingFromTheListIsNotAdded) {
  RingPicker picker(kSelf, Factory());
  const std::vector<std::string> others = {kPeer2, kPeer3};
  picker.SetPeers(others);
  EXPECT_EQ(picker.Peers(), others);
  // The ring is exactly the list: even the keys self would own on the full
  // ring go to the owner the other nodes agree on.
  const HashRing full({kSelf, kPeer2, kPeer3});
  const HashRing ring(others);
  int would_be_ours = 0;
  for (int n = 0; n < 1000; ++n) {
    const std::string key = "key-" + std::to_string(n);
    ASSERT_EQ(PickedAddress(picker, key), ring.Owner(key)) << key;
    would_be_ours += full.Owner(key) == kSelf;
  }
  EXPECT_GT(would_be_ours, 0);
  EXPECT_EQ(FactoryCallsFor(kSelf), 0);
}

TEST_F(RingPickerTest, SelfAloneOwnsEverything) {
  RingPicker picker(kSelf, Factory());
  RingPicker::Change change = picker.SetPeers({kSelf});
  EXPECT_THAT(change.added, ElementsAre(kSelf));
  EXPECT_THAT(picker.Peers(), ElementsAre(kSelf));
  for (int n = 0; n < 100; ++n) EXPECT_EQ(picker.PickPeer("key-" + std::to_string(n)), nullptr);
  EXPECT_THAT(factory_calls_, IsEmpty());
}

TEST_F(RingPickerTest, DuplicatesAreIgnored) {
  RingPicker picker(kSelf, Factory());
  RingPicker::Change change = picker.SetPeers({kPeer3, kSelf, kPeer2, kPeer3, kSelf, kPeer2});
  EXPECT_THAT(picker.Peers(), ElementsAre(kPeer3, kSelf, kPeer2));
  EXPECT_THAT(change.added, ElementsAre(kPeer3, kSelf, kPeer2));
  EXPECT_THAT(factory_calls_, ElementsAre(kPeer3, kPeer2));
  const HashRing ring({kPeer3, kSelf, kPeer2});
  for (int n = 0; n < 1000; ++n) {
    const std::string key = "key-" + std::to_string(n);
    const std::string_view owner = ring.Owner(key);
    ASSERT_EQ(PickedAddress(picker, key), owner == kSelf ? "" : owner) << key;
  }
}

TEST_F(RingPickerTest, KeptPeersKeepTheirGetterAndRemovedOnesAreReleased) {
  RingPicker picker(kSelf, Factory());
  const std::vector<std::string> first = {kSelf, kPeer2, kPeer3};
  picker.SetPeers(first);
  const std::shared_ptr<PeerGetter> peer2_before = picker.PickPeer(KeyOwnedBy(first, kPeer2));
  ASSERT_NE(peer2_before, nullptr);
  ASSERT_EQ(registry_.Alive(kPeer3), 1);

  const std::vector<std::string> second = {kSelf, kPeer2, kPeer4};
  RingPicker::Change change = picker.SetPeers(second);
  EXPECT_THAT(change.added, ElementsAre(kPeer4));
  EXPECT_THAT(change.removed, ElementsAre(kPeer3));
  EXPECT_THAT(change.rejected, IsEmpty());

  // 9002 kept: the same object, not a new connection.
  EXPECT_EQ(picker.PickPeer(KeyOwnedBy(second, kPeer2)), peer2_before);
  EXPECT_EQ(FactoryCallsFor(kPeer2), 1);
  EXPECT_EQ(registry_.Of(kPeer2).created, 1);
  // 9004 new: made once.
  EXPECT_EQ(PickedAddress(picker, KeyOwnedBy(second, kPeer4)), kPeer4);
  EXPECT_EQ(registry_.Of(kPeer4).created, 1);
  // 9003 removed, and nobody held its getter: destroyed, exactly once.
  EXPECT_EQ(registry_.Of(kPeer3).created, 1);
  EXPECT_EQ(registry_.Of(kPeer3).destroyed, 1);
  EXPECT_EQ(registry_.Alive(kPeer2), 1);
}

TEST_F(RingPickerTest, RemovedGetterLivesUntilTheCallHoldingItEnds) {
  RingPicker picker(kSelf, Factory());
  picker.SetPeers({kSelf, kPeer2});
  std::shared_ptr<PeerGetter> in_flight = picker.PickPeer(KeyOwnedBy({kSelf, kPeer2}, kPeer2));
  ASSERT_NE(in_flight, nullptr);

  RingPicker::Change change = picker.SetPeers({kSelf});
  EXPECT_THAT(change.removed, ElementsAre(kPeer2));
  EXPECT_EQ(registry_.Of(kPeer2).destroyed, 0);
  EXPECT_TRUE(static_cast<FakeGetter&>(*in_flight).live());
  absl::StatusOr<PeerValue> v = in_flight->Get("scores", "k");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->value.view(), kPeer2);

  in_flight.reset();
  EXPECT_EQ(registry_.Of(kPeer2).destroyed, 1);

  // Back again: a new client, since the old one is gone.
  picker.SetPeers({kSelf, kPeer2});
  EXPECT_EQ(registry_.Of(kPeer2).created, 2);
}

TEST_F(RingPickerTest, GettersAreReleasedWithThePicker) {
  {
    RingPicker picker(kSelf, Factory());
    picker.SetPeers({kSelf, kPeer2, kPeer3});
    ASSERT_EQ(registry_.Alive(kPeer2), 1);
  }
  EXPECT_EQ(registry_.Alive(kPeer2), 0);
  EXPECT_EQ(registry_.Alive(kPeer3), 0);
}

TEST_F(RingPickerTest, ChangeListsAddedAndRemovedInOrder) {
  RingPicker picker(kSelf, Factory());
  RingPicker::Change change = picker.SetPeers({kSelf, kPeer2, kPeer3});
  EXPECT_THAT(change.added, ElementsAre(kSelf, kPeer2, kPeer3));
  EXPECT_THAT(change.removed, IsEmpty());

  change = picker.SetPeers({kPeer4, kSelf, kPeer3, "127.0.0.1:9005"});
  EXPECT_THAT(change.added, ElementsAre(kPeer4, "127.0.0.1:9005"));
  EXPECT_THAT(change.removed, ElementsAre(kPeer2));

  // The same set again (even reordered) changes no address.
  change = picker.SetPeers({kSelf, kPeer3, kPeer4, "127.0.0.1:9005"});
  EXPECT_THAT(change.added, IsEmpty());
  EXPECT_THAT(change.removed, IsEmpty());
  EXPECT_THAT(change.rejected, IsEmpty());
  EXPECT_THAT(picker.Peers(), ElementsAre(kSelf, kPeer3, kPeer4, "127.0.0.1:9005"));
}

TEST_F(RingPickerTest, RejectedAddressesStayOffTheRingAndAreRetried) {
  reject_.insert(kPeer3);
  throw_on_.insert("not an address");
  RingPicker picker(kSelf, Factory());
  RingPicker::Change change = picker.SetPeers({kSelf, kPeer3, "not an address", kPeer2});
  EXPECT_THAT(change.added, ElementsAre(kSelf, kPeer2));
  EXPECT_THAT(change.rejected, ElementsAre(kPeer3, "not an address"));
  EXPECT_THAT(picker.Peers(), ElementsAre(kSelf, kPeer2));
  const HashRing ring({kSelf, kPeer2});
  for (int n = 0; n < 1000; ++n) {
    const std::string key = "key-" + std::to_string(n);
    const std::string_view owner = ring.Owner(key);
    ASSERT_EQ(PickedAddress(picker, key), owner == kSelf ? "" : owner) << key;
  }

  // Never on the ring, so not "removed"; tried again when listed again.
  change = picker.SetPeers({kSelf, kPeer2});
  EXPECT_THAT(change.removed, IsEmpty());
  reject_.clear();
  change = picker.SetPeers({kSelf, kPeer3, "not an address", kPeer2});
  EXPECT_THAT(change.added, ElementsAre(kPeer3));
  EXPECT_THAT(change.rejected, ElementsAre("not an address"));
  EXPECT_EQ(FactoryCallsFor(kPeer3), 2);
  EXPECT_EQ(PickedAddress(picker, KeyOwnedBy({kSelf, kPeer3, kPeer2}, kPeer3)), kPeer3);
}

TEST_F(RingPickerTest, ReplicasAreHonoured) {
  // With one point per peer the owners differ from the default ring's.
  RingPicker one(kSelf, Factory(), 1);
  RingPicker fifty(kSelf, Factory());
  const std::vector<std::string> peers = {kSelf, kPeer2, kPeer3};
  one.SetPeers(peers);
  fifty.SetPeers(peers);
  const HashRing ring(peers, 1);
  int differ = 0;
  for (int n = 0; n < 1000; ++n) {
    const std::string key = "key-" + std::to_string(n);
    const std::string_view owner = ring.Owner(key);
    ASSERT_EQ(PickedAddress(one, key), owner == kSelf ? "" : owner) << key;
    differ += PickedAddress(one, key) != PickedAddress(fifty, key);
  }
  EXPECT_GT(differ, 0);
}

// Readers pick while a writer flips between two peer sets. Every pick must
// match ring A or ring B for that key, return a live getter, and return the
// single getter of the peer both rings keep.
TEST_F(RingPickerTest, PicksDuringSetPeersSeeOneWholeRing) {
  const std::vector<std::string> ring_a = {kSelf, kPeer2, kPeer3};
  const std::vector<std::string> ring_b = {kSelf, kPeer3, kPeer4};
  struct Expected {
    std::string key, owner_a, owner_b;  // "" for self
  };
  std::vector<Expected> keys;
  {
    const HashRing a(ring_a), b(ring_b);
    auto remote = [](std::string_view owner) {
      return owner == kSelf ? std::string() : std::string(owner);
    };
    for (int n = 0; n < 64; ++n) {
      std::string key = "key-" + std::to_string(n);
      keys.push_back({key, remote(a.Owner(key)), remote(b.Owner(key))});
    }
  }
  int differ = 0;
  for (const Expected& e : keys) differ += e.owner_a != e.owner_b;
  ASSERT_GT(differ, 0);

  RingPicker picker(kSelf, Factory());
  picker.SetPeers(ring_a);
  const std::shared_ptr<PeerGetter> kept = picker.PickPeer(KeyOwnedBy(ring_a, kPeer3));
  ASSERT_NE(kept, nullptr);

  constexpr int kWriterIterations = 1000;
  std::atomic<bool> stop{false};
  std::atomic<int> rounds{0};  // full passes over `keys`, by both readers
  std::atomic<int> bad{0}, dead{0}, not_kept{0}, only_a{0}, only_b{0};
  std::mutex first_bad_mu;
  std::string first_bad;

  auto reader = [&] {
    while (!stop.load(std::memory_order_acquire)) {
      for (const Expected& e : keys) {
        std::shared_ptr<PeerGetter> getter = picker.PickPeer(e.key);
        std::string got;
        if (getter != nullptr) {
          const auto& fake = static_cast<const FakeGetter&>(*getter);
          if (!fake.live()) {
            ++dead;
            continue;
          }
          got = fake.address();
          if (got == kPeer3 && getter != kept) ++not_kept;
        }
        if (got != e.owner_a && got != e.owner_b) {
          if (bad++ == 0) {
            std::lock_guard lock(first_bad_mu);
            first_bad = e.key + " -> \"" + got + "\"";
          }
        } else if (e.owner_a != e.owner_b) {
          ++(got == e.owner_a ? only_a : only_b);
        }
      }
      rounds.fetch_add(1, std::memory_order_acq_rel);
    }
  };
  std::thread r1(reader), r2(reader);

  for (int i = 0; i < kWriterIterations; ++i) {
    picker.SetPeers(i % 2 == 0 ? ring_b : ring_a);
    // Let the readers finish a full pass that started after this SetPeers:
    // two passes may have begun before it (one per reader), the third not.
    const int start = rounds.load(std::memory_order_acquire);
    while (rounds.load(std::memory_order_acquire) < start + 3) std::this_thread::yield();
  }
  stop.store(true, std::memory_order_release);
  r1.join();
  r2.join();

  EXPECT_EQ(bad.load(), 0) << "first: " << first_bad;
  EXPECT_EQ(dead.load(), 0);
  EXPECT_EQ(not_kept.load(), 0);
  // Both rings were seen, so the writer's updates did reach the readers.
  EXPECT_GT(only_a.load(), 0);
  EXPECT_GT(only_b.load(), 0);
  // 9003 was on both rings: one client all along. 9002 and 9004 came and
  // went each iteration; only the final ring's (A, after an even count) lives.
  EXPECT_EQ(registry_.Of(kPeer3).created, 1);
  EXPECT_EQ(registry_.Of(kPeer2).created, kWriterIterations / 2 + 1);
  EXPECT_EQ(registry_.Of(kPeer4).created, kWriterIterations / 2);
  EXPECT_EQ(registry_.Alive(kPeer2), 1);
  EXPECT_EQ(registry_.Alive(kPeer4), 0);
}

// Writers racing each other: each SetPeers must start from the result of the
// one before, so the reported changes add up to the final peer set.
TEST_F(RingPickerTest, ConcurrentSetPeersLoseNoUpdate) {
  std::mutex factory_mu;  // the fixture's call log is not thread-safe
  PeerFactory factory = Factory();
  RingPicker picker(kSelf, [&](const std::string& address) {
    std::lock_guard lock(factory_mu);
    return factory(address);
  });
  const std::vector<std::vector<std::string>> sets = {
      {kSelf, kPeer2}, {kSelf, kPeer3}, {kSelf, kPeer2, kPeer4}, {kSelf, kPeer4, kPeer3}};
  const std::vector<std::string> all = {kSelf, kPeer2, kPeer3, kPeer4};

  constexpr int kIterations = 500;
  std::mutex net_mu;
  std::map<std::string, int> net;  // times added minus times removed
  auto writer = [&](int offset) {
    for (int i = 0; i < kIterations; ++i) {
      RingPicker::Change change = picker.SetPeers(sets[(i + offset) % sets.size()]);
      std::lock_guard lock(net_mu);
      for (const std::string& a : change.added) ++net[a];
      for (const std::string& a : change.removed) --net[a];
    }
  };
  std::thread w1(writer, 0), w2(writer, 1);
  w1.join();
  w2.join();

  const std::vector<std::string> final_peers = picker.Peers();
  const std::set<std::string> on_ring(final_peers.begin(), final_peers.end());
  for (const std::string& address : all) {
    const int expected = on_ring.contains(address) ? 1 : 0;
    EXPECT_EQ(net[address], expected) << address;
    if (address != kSelf) {
      EXPECT_EQ(registry_.Alive(address), expected) << address;
    }
  }
}

// --- Ring kinds and outlier ejection --------------------------------------

TEST_F(RingPickerTest, BalancedKindRoutesByTheBalancedRing) {
  const std::vector<std::string> peers = {kSelf, kPeer2, kPeer3};
  RingPicker picker(kSelf, Factory(), RingPickerOptions{.kind = RingKind::kBalanced});
  picker.SetPeers(peers);
  const HashRing ring(RingKind::kBalanced, peers);
  const HashRing groupcache(peers);
  int differ = 0;
  for (int n = 0; n < 1000; ++n) {
    const std::string key = "key-" + std::to_string(n);
    const std::string_view owner = ring.Owner(key);
    ASSERT_EQ(PickedAddress(picker, key), owner == kSelf ? "" : owner) << key;
    differ += owner != groupcache.Owner(key);
  }
  EXPECT_GT(differ, 0);
}

// A peer whose answers the test sets: a value, or a failure status.
class ScriptedGetter : public PeerGetter {
 public:
  absl::StatusOr<PeerValue> Get(std::string_view /*group*/, std::string_view /*key*/) override {
    calls_.fetch_add(1);
    std::lock_guard lock(mu_);
    // A fresh Status per call, not a copy of status_: copies share one
    // refcounted payload, whose count Debian's abseil (not built for TSan)
    // changes where TSan cannot see it, so it would report the threads'
    // copies as a race.
    if (!status_.ok()) return absl::Status(status_.code(), std::string(status_.message()));
    return ByteView::Copy("v");
  }
  void Answer(absl::Status status) {
    std::lock_guard lock(mu_);
    status_ = std::move(status);
  }
  int calls() const { return calls_.load(); }
  // What Slowness says: the link judged slow (or not).
  void SetSlow(bool slow) { slow_.store(slow); }
  absl::Status Slowness() const override {
    return slow_.load() ? absl::UnavailableError("the link is slow") : absl::OkStatus();
  }

 private:
  std::atomic<int> calls_{0};
  std::atomic<bool> slow_{false};
  std::mutex mu_;
  absl::Status status_;
};

class EjectionPickerTest : public ::testing::Test {
 protected:
  EjectionPickerTest()
      : picker_(
            kSelf,
            [this](const std::string& address) -> std::shared_ptr<PeerGetter> {
              auto getter = std::make_shared<ScriptedGetter>();
              getters_[address] = getter;
              return getter;
            },
            RingPickerOptions{
                .kind = RingKind::kGroupcache,
                .replicas = 0,
                .ejection = {.after_failures = 3,
                             .base_backoff = absl::Seconds(1),
                             .max_backoff = absl::Seconds(30),
                             .clock = &clock_,
                             .on_event =
                                 [this](const EjectionEvent& e) {
                                   std::lock_guard lock(events_mu_);
                                   events_.push_back(absl::StrCat(
                                       e.kind == EjectionEvent::Kind::kEjected ? "ejected "
                                                                               : "returned ",
                                       std::string(e.address)));
                                 },
                             .slow_links = true},
            }) {
    picker_.SetPeers({kSelf, kPeer2, kPeer3});
    key2_ = KeyOwnedBy({kSelf, kPeer2, kPeer3}, kPeer2);
  }

  // What the Group does: pick, and call the picked peer if any. Returns
  // whether a peer was called.
  bool GetThroughPicker(std::string_view key) {
    std::shared_ptr<PeerGetter> peer = picker_.PickPeer(key);
    if (peer == nullptr) return false;
    (void)peer->Get("scores", key);
    return true;
  }

  ManualClock clock_;
  std::map<std::string, std::shared_ptr<ScriptedGetter>> getters_;
  std::mutex events_mu_;
  std::vector<std::string> events_;  // GUARDED_BY(events_mu_)
  RingPicker picker_;
  std::string key2_;
};

TEST_F(EjectionPickerTest, AFailingPeerIsSkippedThenProbedThenUsedAgain) {
  ScriptedGetter& peer2 = *getters_.at(kPeer2);
  peer2.Answer(absl::DeadlineExceededError("deadline"));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(GetThroughPicker(key2_));
  EXPECT_THAT(events_, ElementsAre(std::string("ejected ") + kPeer2));
  EXPECT_THAT(picker_.EjectedPeers(), ElementsAre(kPeer2));

  // Ejected: its keys are local (null), and it is not called at all.
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(GetThroughPicker(key2_));
  EXPECT_EQ(peer2.calls(), 3);
  // Other peers are not affected.
  EXPECT_NE(picker_.PickPeer(KeyOwnedBy({kSelf, kPeer2, kPeer3}, kPeer3)), nullptr);

  EjectionStats stats = picker_.ejection_stats();
  EXPECT_EQ(stats.ejections, 1);
  EXPECT_EQ(stats.out_now, 1);
  EXPECT_EQ(stats.skipped, 100);

  // After the backoff: one probe; the others stay local while it is out.
  clock_.Advance(absl::Seconds(1));
  std::shared_ptr<PeerGetter> probe = picker_.PickPeer(key2_);
  ASSERT_NE(probe, nullptr);
  EXPECT_EQ(picker_.PickPeer(key2_), nullptr);
  peer2.Answer(absl::OkStatus());
  ASSERT_TRUE(probe->Get("scores", key2_).ok());
  EXPECT_EQ(peer2.calls(), 4);
  EXPECT_THAT(events_,
              ElementsAre(std::string("ejected ") + kPeer2, std::string("returned ") + kPeer2));

  // Back in service: the same getter as before the ejection.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(GetThroughPicker(key2_));
  EXPECT_EQ(peer2.calls(), 14);
  stats = picker_.ejection_stats();
  EXPECT_EQ(stats.returns, 1);
  EXPECT_EQ(stats.probes, 1);
  EXPECT_EQ(stats.out_now, 0);
  EXPECT_THAT(picker_.EjectedPeers(), IsEmpty());
}

// A peer that answers, but over a link its transport judges slow, is
// ejected as a failing one is; a probe answered while the link is still
// slow keeps it out, and one answered once it is not returns it. Callers
// get the answers all along.
TEST_F(EjectionPickerTest, APeerAnsweringOverASlowLinkIsEjectedUntilTheLinkIsBack) {
  ScriptedGetter& peer2 = *getters_.at(kPeer2);
  peer2.SetSlow(true);
  for (int i = 0; i < 3; ++i) {
    std::shared_ptr<PeerGetter> peer = picker_.PickPeer(key2_);
    ASSERT_NE(peer, nullptr);
    EXPECT_TRUE(peer->Get("scores", key2_).ok()) << "the caller still gets the answer";
  }
  EXPECT_THAT(picker_.EjectedPeers(), ElementsAre(kPeer2));
  EXPECT_FALSE(GetThroughPicker(key2_));

  clock_.Advance(absl::Seconds(1));
  std::shared_ptr<PeerGetter> probe = picker_.PickPeer(key2_);
  ASSERT_NE(probe, nullptr);
  EXPECT_TRUE(probe->Get("scores", key2_).ok());
  EXPECT_THAT(picker_.EjectedPeers(), ElementsAre(kPeer2)) << "still slow: out again";

  peer2.SetSlow(false);
  clock_.Advance(absl::Seconds(2));
  probe = picker_.PickPeer(key2_);
  ASSERT_NE(probe, nullptr);
  EXPECT_TRUE(probe->Get("scores", key2_).ok());
  EXPECT_THAT(picker_.EjectedPeers(), IsEmpty());
  EXPECT_THAT(events_,
              ElementsAre(std::string("ejected ") + kPeer2, std::string("ejected ") + kPeer2,
                          std::string("returned ") + kPeer2));
}

TEST_F(RingPickerTest, WithSlowLinksOffTheDefaultASlowLinkIsNotAFailure) {
  std::map<std::string, std::shared_ptr<ScriptedGetter>> getters;
  RingPicker picker(
      kSelf,
      [&](const std::string& address) -> std::shared_ptr<PeerGetter> {
        auto getter = std::make_shared<ScriptedGetter>();
        getter->SetSlow(true);
        getters[address] = getter;
        return getter;
      },
      RingPickerOptions{.ejection = {.after_failures = 3}});
  picker.SetPeers({kSelf, kPeer2, kPeer3});
  const std::string key2 = KeyOwnedBy({kSelf, kPeer2, kPeer3}, kPeer2);
  for (int i = 0; i < 10; ++i) {
    std::shared_ptr<PeerGetter> peer = picker.PickPeer(key2);
    ASSERT_NE(peer, nullptr);
    EXPECT_TRUE(peer->Get("scores", key2).ok());
  }
  EXPECT_THAT(picker.EjectedPeers(), IsEmpty());
}

TEST_F(EjectionPickerTest, InBandAnswersDoNotEject) {
  ScriptedGetter& peer2 = *getters_.at(kPeer2);
  peer2.Answer(absl::NotFoundError("lru_cache: key not found"));
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(GetThroughPicker(key2_));
  peer2.Answer(absl::InvalidArgumentError("lru_cache: empty key"));
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(GetThroughPicker(key2_));
  EXPECT_THAT(events_, IsEmpty());
  EXPECT_EQ(picker_.ejection_stats().ejections, 0);
}

TEST_F(EjectionPickerTest, AKeptPeerKeepsItsHealthAcrossSetPeers) {
  getters_.at(kPeer2)->Answer(absl::UnavailableError("connection refused"));
  for (int i = 0; i < 3; ++i) GetThroughPicker(key2_);
  ASSERT_THAT(picker_.EjectedPeers(), ElementsAre(kPeer2));

  picker_.SetPeers({kSelf, kPeer2, kPeer3, kPeer4});
  EXPECT_THAT(picker_.EjectedPeers(), ElementsAre(kPeer2));
  const std::string key = KeyOwnedBy({kSelf, kPeer2, kPeer3, kPeer4}, kPeer2);
  EXPECT_EQ(picker_.PickPeer(key), nullptr);

  // Removed and listed again: a new client with a clean record.
  picker_.SetPeers({kSelf, kPeer3});
  EXPECT_EQ(picker_.ejection_stats().out_now, 0);
  picker_.SetPeers({kSelf, kPeer2, kPeer3});
  EXPECT_NE(picker_.PickPeer(key2_), nullptr);
}

// Readers pick and call while the owner flaps and the peer set changes
// (the flapping peer is on every set, so it keeps its health). Under
// ThreadSanitizer this checks the picker's ejection paths for races; the
// counters must add up whatever the interleaving.
TEST_F(EjectionPickerTest, ConcurrentPicksWhileThePeerFlapsAndThePeerSetChanges) {
  ScriptedGetter& peer2 = *getters_.at(kPeer2);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> remote{0}, local{0};
  auto reader = [&] {
    while (!stop.load(std::memory_order_acquire)) {
      ++(GetThroughPicker(key2_) ? remote : local);
    }
  };
  std::thread r1(reader), r2(reader), r3(reader);
  for (int i = 0; i < 200; ++i) {
    peer2.Answer(i % 4 < 2 ? absl::UnavailableError("refused") : absl::OkStatus());
    picker_.SetPeers(i % 2 == 0 ? std::vector<std::string>{kSelf, kPeer2, kPeer3, kPeer4}
                                : std::vector<std::string>{kSelf, kPeer2, kPeer3});
    clock_.Advance(absl::Seconds(31));  // past any backoff: the next pick may probe
    const int64_t seen = remote.load() + local.load();
    while (remote.load() + local.load() < seen + 20) std::this_thread::yield();
  }
  stop.store(true, std::memory_order_release);
  r1.join();
  r2.join();
  r3.join();

  const EjectionStats stats = picker_.ejection_stats();
  EXPECT_GT(stats.ejections, 0);
  EXPECT_GT(stats.returns, 0);
  EXPECT_EQ(stats.out_now, static_cast<int64_t>(picker_.EjectedPeers().size()));
  // Every ejection is ended by a probe (which returns the peer or ejects it
  // again), except one still waiting for its probe; no probe is in flight
  // now, the readers have stopped. A probe can also be replaced: when the
  // clock jumps past the cap between a reader taking the probe and calling
  // it, the next pick probes anew (and the late result is ignored), so
  // probes may exceed that count, by at most one per clock jump.
  EXPECT_GE(stats.probes, stats.ejections - stats.out_now);
  EXPECT_LE(stats.probes, stats.ejections - stats.out_now + 200);
  EXPECT_LE(stats.returns, stats.probes);
  std::lock_guard lock(events_mu_);
  EXPECT_EQ(static_cast<int64_t>(events_.size()), stats.ejections + stats.returns);
}

TEST_F(RingPickerTest, WithoutEjectionAFailingPeerIsAlwaysPicked) {
  auto failing = std::make_shared<ScriptedGetter>();
  failing->Answer(absl::UnavailableError("connection refused"));
  RingPicker picker(kSelf, [&](const std::string&) { return failing; });
  picker.SetPeers({kSelf, kPeer2});
  const std::string key = KeyOwnedBy({kSelf, kPeer2}, kPeer2);
  for (int i = 0; i < 100; ++i) {
    std::shared_ptr<PeerGetter> peer = picker.PickPeer(key);
    ASSERT_EQ(peer, failing);  // the factory's getter itself, not a wrapper
    (void)peer->Get("scores", key);
  }
  EXPECT_EQ(picker.ejection_stats().ejections, 0);
}

// --- Warm-up: PreviousOwner and HeirOf -----------------------------------------

class WarmupPickerTest : public RingPickerTest {
 protected:
  RingPicker NewPicker(absl::Duration warmup = absl::Seconds(60)) {
    return RingPicker(kSelf, Factory(), RingPickerOptions{.warmup = warmup, .clock = &clock_});
  }
  static std::string AddressOf(const std::shared_ptr<PeerGetter>& getter) {
    return getter == nullptr ? "" : static_cast<FakeGetter&>(*getter).address();
  }
  ManualClock clock_;
};

TEST_F(WarmupPickerTest, AfterJoiningTheKeysItTookOverNameTheirOwnerOnTheRingWithoutIt) {
  RingPicker picker = NewPicker();
  picker.SetPeers({kSelf, kPeer2, kPeer3});
  const std::vector<std::string> before = {kPeer2, kPeer3};
  for (const char* previous : {kPeer2, kPeer3}) {
    // A key self owns now that `previous` owned before self joined.
    std::string key;
    for (int n = 0; n < 100000 && key.empty(); ++n) {
      std::string k = "key-" + std::to_string(n);
      if (HashRing(std::vector<std::string>{kSelf, kPeer2, kPeer3}).Owner(k) == kSelf &&
          HashRing(before).Owner(k) == previous) {
        key = k;
      }
    }
    ASSERT_FALSE(key.empty());
    EXPECT_EQ(AddressOf(picker.PreviousOwner(key).getter), previous) << key;
  }
  // Keys another node owns are not self's to peek for.
  EXPECT_EQ(picker.PreviousOwner(KeyOwnedBy({kSelf, kPeer2, kPeer3}, kPeer2)).getter, nullptr);
}

TEST_F(WarmupPickerTest, TheWindowCloses) {
  RingPicker picker = NewPicker(absl::Seconds(60));
  picker.SetPeers({kSelf, kPeer2});
  const std::string key = KeyOwnedBy({kSelf, kPeer2}, kSelf);
  EXPECT_EQ(AddressOf(picker.PreviousOwner(key).getter), kPeer2);
  clock_.Advance(absl::Seconds(59));
  EXPECT_EQ(AddressOf(picker.PreviousOwner(key).getter), kPeer2);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(picker.PreviousOwner(key).getter, nullptr);
}

TEST_F(WarmupPickerTest, WithoutAWindowThereIsNoPreviousOwner) {
  RingPicker picker = NewPicker(absl::ZeroDuration());
  picker.SetPeers({kSelf, kPeer2});
  EXPECT_EQ(picker.PreviousOwner(KeyOwnedBy({kSelf, kPeer2}, kSelf)).getter, nullptr);
}

// A node that left may still be draining (it hands its keys off and serves
// until it stops): its getter is kept for the window, then released.
TEST_F(WarmupPickerTest, AKeyTakenFromANodeThatLeftNamesItUntilTheWindowCloses) {
  RingPicker picker = NewPicker();
  picker.SetPeers({kSelf, kPeer2, kPeer3});
  clock_.Advance(absl::Seconds(61));  // the join's window is over
  picker.SetPeers({kSelf, kPeer2});   // kPeer3 left
  const std::vector<std::string> three = {kSelf, kPeer2, kPeer3};
  const std::vector<std::string> two = {kSelf, kPeer2};
  std::string from3;
  for (int n = 0; n < 100000 && from3.empty(); ++n) {
    std::string k = "key-" + std::to_string(n);
    if (HashRing(three).Owner(k) == kPeer3 && HashRing(two).Owner(k) == kSelf) from3 = k;
  }
  ASSERT_FALSE(from3.empty());
  EXPECT_EQ(AddressOf(picker.PreviousOwner(from3).getter), kPeer3);
  EXPECT_EQ(registry_.Alive(kPeer3), 1);
  clock_.Advance(absl::Seconds(60));
  EXPECT_EQ(picker.PreviousOwner(from3).getter, nullptr);
  picker.SetPeers({kSelf, kPeer2});  // the next snapshot drops the closed window
  EXPECT_EQ(registry_.Alive(kPeer3), 0);
  // It comes back: the keys it owned before are its own again, not self's.
  picker.SetPeers({kSelf, kPeer2, kPeer3});
  EXPECT_EQ(picker.PreviousOwner(from3).getter, nullptr);
  EXPECT_EQ(PickedAddress(picker, from3), kPeer3);
}

TEST_F(WarmupPickerTest, ARejoiningNodeAsksTheNodeThatHeldItsKeysMeanwhile) {
  // Self left (its lease expired) and came back: the keys it owns again
  // were kPeer2's in the meantime.
  RingPicker picker = NewPicker();
  picker.SetPeers({kSelf, kPeer2});
  clock_.Advance(absl::Seconds(61));
  picker.SetPeers({kPeer2});
  picker.SetPeers({kSelf, kPeer2});
  EXPECT_EQ(AddressOf(picker.PreviousOwner(KeyOwnedBy({kSelf, kPeer2}, kSelf)).getter), kPeer2);
}

TEST_F(WarmupPickerTest, HeirOfNamesTheOwnerOnTheRingWithoutSelf) {
  RingPicker picker = NewPicker(absl::ZeroDuration());
  EXPECT_EQ(picker.HeirOf("any").getter, nullptr);  // no ring yet
  picker.SetPeers({kSelf, kPeer2, kPeer3});
  const std::vector<std::string> others = {kPeer2, kPeer3};
  for (int n = 0; n < 200; ++n) {
    const std::string key = "key-" + std::to_string(n);
    const PeerPicker::Peer heir = picker.HeirOf(key);
    EXPECT_EQ(heir.address, HashRing(others).Owner(key)) << key;
    EXPECT_EQ(AddressOf(heir.getter), heir.address);
  }
  picker.SetPeers({kSelf});
  EXPECT_EQ(picker.HeirOf("any").getter, nullptr);  // alone: nobody to hand off to
}

// --- Replication: ReplicaHolders, StandIn, and PickPeer for an ejected owner --

class ReplicationPickerTest : public RingPickerTest {
 protected:
  RingPicker NewPicker(int replication) {
    return RingPicker(kSelf, Factory(), RingPickerOptions{.replication = replication});
  }
  static std::string AddressOf(const std::shared_ptr<PeerGetter>& getter) {
    return getter == nullptr ? "" : static_cast<FakeGetter&>(*getter).address();
  }
  static std::vector<std::string> Addresses(const std::vector<PeerPicker::Peer>& peers) {
    std::vector<std::string> out;
    for (const PeerPicker::Peer& p : peers) {
      EXPECT_EQ(AddressOf(p.getter), p.address);
      out.push_back(p.address);
    }
    return out;
  }
  const std::vector<std::string> ring_ = {kSelf, kPeer2, kPeer3, kPeer4};
};

TEST_F(ReplicationPickerTest, TheOwnerNamesItsSuccessorsAsHolders) {
  for (int replication : {2, 3}) {
    RingPicker picker = NewPicker(replication);
    picker.SetPeers(ring_);
    const HashRing ring(ring_);
    int owned = 0;
    for (int n = 0; n < 400; ++n) {
      const std::string key = "key-" + std::to_string(n);
      const std::vector<std::string_view> s = ring.Successors(key, replication);
      if (s[0] != kSelf) {
        EXPECT_THAT(picker.ReplicaHolders(key), IsEmpty()) << "not self's to push: " << key;
        continue;
      }
      ++owned;
      const std::vector<std::string> expected(s.begin() + 1, s.end());
      EXPECT_EQ(Addresses(picker.ReplicaHolders(key)), expected) << key;
    }
    EXPECT_GT(owned, 20);
  }
}

TEST_F(ReplicationPickerTest, WithoutReplicationThereAreNoHoldersAndNoStandIn) {
  RingPicker picker = NewPicker(1);
  picker.SetPeers(ring_);
  EXPECT_THAT(picker.ReplicaHolders(KeyOwnedBy(ring_, kSelf)), IsEmpty());
  EXPECT_EQ(picker.StandIn(KeyOwnedBy(ring_, kPeer2)).address, "");
}

TEST_F(ReplicationPickerTest, TheStandInIsTheOwnersFirstSuccessor) {
  RingPicker picker = NewPicker(2);
  picker.SetPeers(ring_);
  const HashRing ring(ring_);
  bool self_stands_in = false;
  for (int n = 0; n < 400; ++n) {
    const std::string key = "key-" + std::to_string(n);
    const std::vector<std::string_view> s = ring.Successors(key, 2);
    const PeerPicker::Peer stand_in = picker.StandIn(key);
    if (s[0] == kSelf) {
      EXPECT_EQ(stand_in.address, "") << "self owns " << key;
      continue;
    }
    EXPECT_EQ(stand_in.address, s[1]) << key;
    if (s[1] == kSelf) {
      self_stands_in = true;
      EXPECT_EQ(stand_in.getter, nullptr) << "self answers from its own replica";
    } else {
      EXPECT_EQ(AddressOf(stand_in.getter), s[1]);
    }
  }
  EXPECT_TRUE(self_stands_in);
}

TEST_F(ReplicationPickerTest, NewHoldersAreTheOnesTheLastRingChangeGave) {
  RingPicker picker = NewPicker(2);
  const std::vector<std::string> three = {kSelf, kPeer2, kPeer3};
  picker.SetPeers(three);
  const HashRing before(three);
  const HashRing after(ring_);
  picker.SetPeers(ring_);  // kPeer4 joins
  int changed = 0;
  int kept = 0;
  for (int n = 0; n < 400; ++n) {
    const std::string key = "key-" + std::to_string(n);
    const std::vector<std::string_view> now = after.Successors(key, 2);
    const std::vector<std::string_view> then = before.Successors(key, 2);
    const std::vector<std::string> fresh = Addresses(picker.NewReplicaHolders(key));
    if (now[0] != kSelf) {
      EXPECT_THAT(fresh, IsEmpty()) << key;
    } else if (then[0] != kSelf || then[1] != now[1]) {
      EXPECT_THAT(fresh, ElementsAre(std::string(now[1]))) << key;
      ++changed;
    } else {
      EXPECT_THAT(fresh, IsEmpty()) << "the holder it had: " << key;
      ++kept;
    }
  }
  EXPECT_GT(changed, 5);
  EXPECT_GT(kept, 20);
}

// An ejected owner's keys go to the first holder in service, not to a local
// load; with no holder in service, local.
TEST_F(ReplicationPickerTest, AnEjectedOwnersKeysGoToItsStandIn) {
  ManualClock clock;
  std::map<std::string, std::shared_ptr<ScriptedGetter>> getters;
  RingPicker picker(
      kSelf,
      [&](const std::string& address) -> std::shared_ptr<PeerGetter> {
        auto getter = std::make_shared<ScriptedGetter>();
        getters[address] = getter;
        return getter;
      },
      RingPickerOptions{.ejection = {.after_failures = 1,
                                     .base_backoff = absl::Seconds(60),
                                     .max_backoff = absl::Seconds(60),
                                     .clock = &clock},
                        .replication = 3});
  picker.SetPeers(ring_);
  const HashRing ring(ring_);
  // A key kPeer2 owns whose first successor is another peer.
  std::string key;
  std::vector<std::string_view> s;
  for (int n = 0; n < 100000 && key.empty(); ++n) {
    std::string k = "key-" + std::to_string(n);
    s = ring.Successors(k, 3);
    if (s[0] == kPeer2 && s[1] != kSelf && s[2] != kSelf) key = k;
  }
  ASSERT_FALSE(key.empty());
  auto eject = [&](std::string_view address) {
    ScriptedGetter& g = *getters.at(std::string(address));
    g.Answer(absl::UnavailableError("down"));
    std::shared_ptr<PeerGetter> picked = picker.PickPeer(KeyOwnedBy(ring_, address));
    ASSERT_NE(picked, nullptr);
    (void)picked->Get("g", "k");
  };
  eject(kPeer2);
  EXPECT_EQ(picker.PickPeer(key), picker.StandIn(key).getter);
  EXPECT_EQ(picker.StandIn(key).address, s[1]);
  // The first holder ejected too: the second.
  eject(s[1]);
  EXPECT_EQ(picker.StandIn(key).address, s[2]);
  EXPECT_EQ(picker.PickPeer(key), picker.StandIn(key).getter);
  eject(s[2]);
  EXPECT_EQ(picker.StandIn(key).address, "");
  EXPECT_EQ(picker.PickPeer(key), nullptr);
}

}  // namespace
}  // namespace lcache
