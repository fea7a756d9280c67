// Group::Get benchmarks on the hit path, 1 and 2 threads, wall-clock time
// (UseRealTime) so that a 2-thread run reports the combined throughput.
//
//   GetHit     the 1M-entry data set of bench_data.h in random order; the
//              group's store (LRU, 256 MiB) holds all of it. The argument is
//              GroupOptions::store_shards: 0 is the default (16 shards for
//              256 MiB), 256 shows what lock sharding does to two threads.
//   GetHitHot  cycling over 8 keys: the fixed cost of a hit without cache
//              misses, and what two threads reading the same keys cost.
//   GetHitPolicy/lru, /lru2, /tinylfu
//              GetHit with the default shards under each store policy: what
//              a policy's hit path costs (TinyLFU's sketch update).
//
// The group is created once and warmed (every key loaded through the getter)
// before the first timed iteration.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "bench_data.h"
#include "lcache/group.h"

namespace lcache::bench {
namespace {

std::unique_ptr<Group> NewWarmGroup(StorePolicy policy, int store_shards) {
  absl::StatusOr<std::unique_ptr<Group>> group = Group::Create({
      .name = "bench",
      .cache_bytes = kBigCapacity,
      .getter = [](std::string_view) -> absl::StatusOr<Loaded> { return ByteView::Copy(Value()); },
      .policy = policy,
      .store_shards = store_shards,
  });
  if (!group.ok()) return nullptr;
  char key[kKeySize];
  for (int n = 0; n < kEntries; ++n) {
    FormatKey("key-", n, key);
    if (!(*group)->Get({key, kKeySize}).ok()) return nullptr;
    // LRU-2 keeps a key seen once in its history, a quarter of the bytes:
    // a second read moves it to the main list before the history overflows.
    if (policy == StorePolicy::kLru2 && !(*group)->Get({key, kKeySize}).ok()) return nullptr;
  }
  return *std::move(group);
}

// Created and warmed on first use; every thread of every benchmark with the
// same policy and store_shards shares it. Groups are kept to the end of the program.
Group* WarmGroup(int store_shards, StorePolicy policy = StorePolicy::kLru) {
  static std::mutex mu;
  static auto* const groups = new std::map<std::pair<StorePolicy, int>, std::unique_ptr<Group>>;
  std::lock_guard lock(mu);
  std::unique_ptr<Group>& group = (*groups)[{policy, store_shards}];
  if (group == nullptr) group = NewWarmGroup(policy, store_shards);
  return group.get();
}

bool CheckWarm(benchmark::State& state, Group* group) {
  if (group != nullptr && group->Stats().store.items == kEntries) return true;
  state.SkipWithError("could not create and warm the group");
  return false;
}

// Warming loaded every key once; any later load means a timed Get missed.
void CheckAllHits(benchmark::State& state, Group* group) {
  if (group->Stats().loads != kEntries) state.SkipWithError("a Get of a warm key missed");
}

// Gets of warm keys in the hit sequence's order, from every thread.
void RunHits(benchmark::State& state, Group* group) {
  const KeySequence& keys = HitKeys();
  if (!CheckWarm(state, group)) return;
  KeyCursor cursor(state.thread_index(), state.threads());
  for (auto _ : state) {
    absl::StatusOr<ByteView> v = group->Get(keys[cursor.Next()]);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  CheckAllHits(state, group);
}

void BM_GroupGetHit(benchmark::State& state) {
  RunHits(state, WarmGroup(static_cast<int>(state.range(0))));
}

void BM_GroupGetHitPolicy(benchmark::State& state, StorePolicy policy) {
  RunHits(state, WarmGroup(/*store_shards=*/0, policy));
}

void BM_GroupGetHitHot(benchmark::State& state) {
  Group* group = WarmGroup(/*store_shards=*/0);
  if (!CheckWarm(state, group)) return;
  constexpr size_t kHot = 8;
  char hot[kHot][kKeySize];
  for (size_t k = 0; k < kHot; ++k) FormatKey("key-", static_cast<int>(k), hot[k]);
  size_t i = static_cast<size_t>(state.thread_index());
  for (auto _ : state) {
    absl::StatusOr<ByteView> v = group->Get({hot[i % kHot], kKeySize});
    benchmark::DoNotOptimize(v);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
  CheckAllHits(state, group);
}

BENCHMARK(BM_GroupGetHit)
    ->ArgName("store_shards")
    ->Arg(0)
    ->Arg(256)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_GroupGetHitHot)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_GroupGetHitPolicy, lru, StorePolicy::kLru)->Threads(1)->UseRealTime();
BENCHMARK_CAPTURE(BM_GroupGetHitPolicy, lru2, StorePolicy::kLru2)->Threads(1)->UseRealTime();
BENCHMARK_CAPTURE(BM_GroupGetHitPolicy, tinylfu, StorePolicy::kTinyLfu)->Threads(1)->UseRealTime();

}  // namespace
}  // namespace lcache::bench
