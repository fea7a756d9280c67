// GroupRegistry: names to groups, safe under concurrent NewGroup/GetGroup.

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "lcache/group.h"

namespace lcache {
namespace {

Getter EchoGetter() {
  return [](std::string_view key) -> absl::StatusOr<Loaded> { return ByteView::Copy(key); };
}

TEST(GroupRegistryTest, NewGroupThenGetGroup) {
  GroupRegistry registry;
  absl::StatusOr<Group*> g = registry.NewGroup({.name = "scores", .getter = EchoGetter()});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(registry.GetGroup("scores"), *g);
  EXPECT_EQ((*g)->name(), "scores");
  EXPECT_EQ(registry.GetGroup("nope"), nullptr);
  EXPECT_EQ(registry.Groups().size(), 1u);
}

TEST(GroupRegistryTest, DuplicateNameIsAlreadyExistsAndKeepsTheFirst) {
  GroupRegistry registry;
  Group* first = *registry.NewGroup({.name = "g", .getter = EchoGetter()});
  absl::StatusOr<Group*> again = registry.NewGroup({.name = "g", .getter = EchoGetter()});
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.GetGroup("g"), first);
}

TEST(GroupRegistryTest, InvalidOptionsChangeNothing) {
  GroupRegistry registry;
  EXPECT_EQ(registry.NewGroup({.name = "g"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.GetGroup("g"), nullptr);
}

TEST(GroupRegistryTest, RegistriesAreIndependent) {
  GroupRegistry a, b;
  ASSERT_TRUE(a.NewGroup({.name = "g", .getter = EchoGetter()}).ok());
  EXPECT_EQ(b.GetGroup("g"), nullptr);
  EXPECT_TRUE(b.NewGroup({.name = "g", .getter = EchoGetter()}).ok());
}

// Run under TSan in CI.
TEST(GroupRegistryTest, ConcurrentNewGroupAndGetGroup) {
  constexpr int kThreads = 8;
  constexpr int kGroupsPerThread = 50;
  GroupRegistry registry;
  std::atomic<int> same_name_winners{0};
  std::atomic<int> lookups_failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      if (registry.NewGroup({.name = "contested", .getter = EchoGetter()}).ok()) {
        ++same_name_winners;
      }
      for (int i = 0; i < kGroupsPerThread; ++i) {
        const std::string name = "g-" + std::to_string(t) + "-" + std::to_string(i);
        absl::StatusOr<Group*> g = registry.NewGroup({.name = name, .getter = EchoGetter()});
        if (!g.ok() || registry.GetGroup(name) != *g) ++lookups_failed;
        // Use a group another thread may be creating right now.
        if (Group* other = registry.GetGroup("g-" + std::to_string((t + 1) % kThreads) + "-" +
                                             std::to_string(i))) {
          if (other->Get("k")->view() != "k") ++lookups_failed;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(same_name_winners, 1);
  EXPECT_EQ(lookups_failed, 0);
  EXPECT_EQ(registry.Groups().size(), size_t{kThreads * kGroupsPerThread + 1});
}

// Expired entries that nobody reads or overwrites are given back by the
// registry's reclaimer thread. Run under TSan in CI.
TEST(GroupRegistryTest, ReclaimerGivesBackExpiredEntriesNobodyTouches) {
  ManualClock clock;
  GroupRegistry registry;
  Group* g = *registry.NewGroup(
      {.name = "g", .getter = EchoGetter(), .default_ttl = absl::Seconds(1), .clock = &clock});
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(g->Get("key-" + std::to_string(i)).ok());
  ASSERT_EQ(g->Stats().store.items, 100);
  ASSERT_TRUE(registry.StartReclaimer(absl::Milliseconds(1), 16).ok());
  EXPECT_EQ(registry.StartReclaimer(absl::Milliseconds(1)).code(),
            absl::StatusCode::kFailedPrecondition);

  clock.Advance(absl::Seconds(1));
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (g->Stats().store.items > 0 && absl::Now() < deadline) std::this_thread::yield();
  GroupStats s = g->Stats();
  EXPECT_EQ(s.store.items, 0);
  EXPECT_EQ(s.store.bytes, 0);
  EXPECT_EQ(s.store.expirations, 100);
}

TEST(GroupRegistryTest, ReclaimerRejectsBadArguments) {
  GroupRegistry registry;
  EXPECT_EQ(registry.StartReclaimer(absl::ZeroDuration()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.StartReclaimer(absl::Seconds(1), 0).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lcache
