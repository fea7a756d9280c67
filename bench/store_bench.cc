// Store benchmarks: Get hit, Get miss and Set for each policy, 1 and 2
// threads, over 1M entries of 16-byte keys and 100-byte values read in random
// order (see bench_data.h). The store is large enough (256 MiB) to hold the
// whole data set, so a Get of a present key is always a hit; it is filled
// once per policy and shared by every benchmark and thread.
//
// Times are wall-clock (UseRealTime) so that items_per_second of a 2-thread
// run is the combined throughput of both threads.
//
//   Get hit      Get of present keys, random order.
//   Get miss     Get of absent keys ("mis-..."), random order.
//   Set          Set of present keys: a replacement, i.e. allocate the new
//                entry, unlink and free the old one. The store stays full
//                and its contents stay the same, so runs do not disturb
//                one another.
//   Get hit hot  Get cycling over 8 present keys: the store's fixed cost
//                without cache misses, and the contention of 2 threads on
//                the same shards and entries.
//
// "lru_shards256" is the LRU store with StoreOptions::shards = 256 instead of
// the default 16, to show what lock sharding does to two threads.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "bench_data.h"
#include "lcache/store.h"

namespace lcache::bench {
namespace {

// Which store a benchmark runs on.
struct Config {
  StorePolicy policy;
  int shards = 0;  // StoreOptions::shards; 0 is the default (16 for 256 MiB)
};

std::unique_ptr<Store> NewFilledStore(Config config) {
  auto store =
      NewStore({.policy = config.policy, .capacity_bytes = kBigCapacity, .shards = config.shards});
  char key[kKeySize];
  for (int n = 0; n < kEntries; ++n) {
    FormatKey("key-", n, key);
    const std::string_view k(key, kKeySize);
    store->Set(k, Value());
    // A second access: LRU-2 promotes the key from its history list (a
    // quarter of the capacity, too small for the data set) to main.
    store->Get(k);
  }
  return store;
}

// Filled on first use; every thread of every benchmark with the same config
// shares it. Stores are kept to the end of the program.
Store& FilledStore(Config config) {
  static std::mutex mu;
  static auto* const stores = new std::map<std::pair<StorePolicy, int>, std::unique_ptr<Store>>;
  std::lock_guard lock(mu);
  std::unique_ptr<Store>& store = (*stores)[{config.policy, config.shards}];
  if (store == nullptr) store = NewFilledStore(config);
  return *store;
}

bool CheckFilled(benchmark::State& state, const Store& store) {
  if (store.Len() == kEntries) return true;
  state.SkipWithError("the store does not hold the whole data set");
  return false;
}

void BM_StoreGetHit(benchmark::State& state, Config config) {
  Store& store = FilledStore(config);
  const KeySequence& keys = HitKeys();
  if (!CheckFilled(state, store)) return;
  KeyCursor cursor(state.thread_index(), state.threads());
  int64_t misses = 0;
  for (auto _ : state) {
    std::optional<ByteView> v = store.Get(keys[cursor.Next()]);
    misses += !v.has_value();
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  if (misses != 0) state.SkipWithError("a Get of a present key missed");
}

void BM_StoreGetMiss(benchmark::State& state, Config config) {
  Store& store = FilledStore(config);
  const KeySequence& keys = MissKeys();
  if (!CheckFilled(state, store)) return;
  KeyCursor cursor(state.thread_index(), state.threads());
  int64_t hits = 0;
  for (auto _ : state) {
    std::optional<ByteView> v = store.Get(keys[cursor.Next()]);
    hits += v.has_value();
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  if (hits != 0) state.SkipWithError("a Get of an absent key hit");
}

void BM_StoreSet(benchmark::State& state, Config config) {
  Store& store = FilledStore(config);
  const KeySequence& keys = HitKeys();
  if (!CheckFilled(state, store)) return;
  const std::string_view value = Value();
  KeyCursor cursor(state.thread_index(), state.threads());
  int64_t rejected = 0;
  for (auto _ : state) {
    rejected += !store.Set(keys[cursor.Next()], value);
  }
  state.SetItemsProcessed(state.iterations());
  if (rejected != 0) state.SkipWithError("a Set was rejected");
}

void BM_StoreGetHitHot(benchmark::State& state, Config config) {
  Store& store = FilledStore(config);
  if (!CheckFilled(state, store)) return;
  constexpr size_t kHot = 8;
  char hot[kHot][kKeySize];
  for (size_t k = 0; k < kHot; ++k) FormatKey("key-", static_cast<int>(k), hot[k]);
  size_t i = static_cast<size_t>(state.thread_index());
  int64_t misses = 0;
  for (auto _ : state) {
    std::optional<ByteView> v = store.Get({hot[i % kHot], kKeySize});
    misses += !v.has_value();
    benchmark::DoNotOptimize(v);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
  if (misses != 0) state.SkipWithError("a Get of a present key missed");
}

constexpr Config kLru{StorePolicy::kLru};
constexpr Config kLru2{StorePolicy::kLru2};
constexpr Config kTinyLfu{StorePolicy::kTinyLfu};
// The default gives a 256 MiB store 16 shards; 256 shows what the lock
// sharding costs two threads (see docs/BENCHMARKS.md).
constexpr Config kLruShards256{StorePolicy::kLru, 256};

BENCHMARK_CAPTURE(BM_StoreGetHit, lru, kLru)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreGetHit, lru2, kLru2)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreGetHit, tinylfu, kTinyLfu)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreGetHit, lru_shards256, kLruShards256)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreGetMiss, lru, kLru)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreGetMiss, lru2, kLru2)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreGetMiss, tinylfu, kTinyLfu)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreGetMiss, lru_shards256, kLruShards256)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreSet, lru, kLru)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreSet, lru2, kLru2)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreSet, tinylfu, kTinyLfu)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreGetHitHot, lru, kLru)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreGetHitHot, lru2, kLru2)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_CAPTURE(BM_StoreGetHitHot, tinylfu, kTinyLfu)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace lcache::bench
