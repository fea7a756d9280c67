// The hit path under threads: a matrix of store policies x access patterns x
// thread counts, hits and misses, beside the machine's memory latency
// measured in the same run (issue 22; the Go lru_cache lists lock-contention
// benchmarks as future work).
//
//   BM_PointerChase        one dependent load that misses every cache: a walk
//                          of a random cycle over 160 MiB of 64-byte nodes.
//                          Divide a 1M-key figure by it to get "loads".
//   BM_Hit/<policy>/<pattern>    Group::Get of keys the group holds.
//   BM_Miss/<policy>/<pattern>   Store::Get of keys the store does not hold
//                                (a Group miss would be a load, not a lookup).
//
// Policies: lru, lru2, tinylfu. Patterns, over the 1M entries of bench_data.h:
//   hot8     every thread cycles over the same 8 keys: no cache misses, so
//            what is left is the fixed cost and what threads sharing hot
//            keys do to each other's cache lines;
//   zipf     Zipf(0.99) over the 1M keys (a fixed sequence of 4M draws);
//   uniform  every key once per pass, in random order.
// Threads 1 and 2 (the machine's cores) and 4 and 8 (oversubscribed: a
// thread preempted while it holds a shard's lock stalls the others). Times
// are wall-clock, so items_per_second of a multi-threaded run is the total.
//
// Each group and store is filled once, before its first timed iteration, and
// shared by every thread and thread count; hits are checked to have been hits
// (no load after the warm-up) and misses to have been misses.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bench_data.h"
#include "lcache/group.h"
#include "lcache/store.h"

namespace lcache::bench {
namespace {

enum class Pattern { kHot8, kZipf, kUniform };

// 4M keys drawn from Zipf(0.99) over the 1M key numbers, laid out back to
// back like KeySequence, so the timed loop reads them sequentially.
class ZipfSequence {
 public:
  static constexpr size_t kDraws = size_t{4} << 20;

  explicit ZipfSequence(const char* prefix) : buf_(kDraws * kKeySize) {
    std::vector<double> cdf(kEntries);
    double sum = 0;
    for (int r = 0; r < kEntries; ++r) cdf[r] = sum += std::pow(r + 1.0, -0.99);
    // Rank r is a shuffled key number, so popular keys are spread over the
    // store's memory as they would be in life.
    std::vector<int> key_of_rank(kEntries);
    std::iota(key_of_rank.begin(), key_of_rank.end(), 0);
    std::shuffle(key_of_rank.begin(), key_of_rank.end(), std::mt19937_64(7));
    std::mt19937_64 rng(99);
    std::uniform_real_distribution<double> u(0, sum);
    for (size_t i = 0; i < kDraws; ++i) {
      const auto rank = std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin();
      FormatKey(prefix, key_of_rank[static_cast<size_t>(std::min<ptrdiff_t>(rank, kEntries - 1))],
                &buf_[i * kKeySize]);
    }
  }

  std::string_view operator[](size_t i) const { return {&buf_[i * kKeySize], kKeySize}; }

 private:
  std::vector<char> buf_;
};

const ZipfSequence& ZipfKeys(bool present) {
  static const ZipfSequence* const hits = new ZipfSequence("key-");
  static const ZipfSequence* const misses = new ZipfSequence("mis-");
  return present ? *hits : *misses;
}

// The keys one thread reads, in order, for a pattern.
class KeyStream {
 public:
  KeyStream(Pattern pattern, bool present, int thread, int threads)
      : pattern_(pattern), present_(present), cursor_(thread, threads) {
    for (int k = 0; k < 8; ++k) FormatKey(present ? "key-" : "mis-", k, hot_[k]);
    i_ = static_cast<size_t>(thread) * ZipfSequence::kDraws / static_cast<size_t>(threads);
    if (pattern == Pattern::kZipf) ZipfKeys(present);  // built before timing
  }

  std::string_view Next() {
    switch (pattern_) {
      case Pattern::kHot8:
        return {hot_[i_++ % 8], kKeySize};
      case Pattern::kZipf:
        if (i_ == ZipfSequence::kDraws) i_ = 0;
        return ZipfKeys(present_)[i_++];
      case Pattern::kUniform:
        break;
    }
    return (present_ ? HitKeys() : MissKeys())[cursor_.Next()];
  }

 private:
  const Pattern pattern_;
  const bool present_;
  KeyCursor cursor_;
  size_t i_ = 0;
  char hot_[8][kKeySize];
};

std::unique_ptr<Group> NewWarmGroup(StorePolicy policy) {
  absl::StatusOr<std::unique_ptr<Group>> group = Group::Create({
      .name = "bench",
      .cache_bytes = kBigCapacity,
      .getter = [](std::string_view) -> absl::StatusOr<Loaded> { return ByteView::Copy(Value()); },
      .policy = policy,
  });
  if (!group.ok()) return nullptr;
  char key[kKeySize];
  for (int n = 0; n < kEntries; ++n) {
    FormatKey("key-", n, key);
    // Twice: LRU-2 keeps a key read once in its history, too small for all.
    for (int i = 0; i < 2; ++i) {
      if (!(*group)->Get({key, kKeySize}).ok()) return nullptr;
    }
  }
  return *std::move(group);
}

std::unique_ptr<Store> NewFilledStore(StorePolicy policy) {
  auto store = NewStore({.policy = policy, .capacity_bytes = kBigCapacity});
  char key[kKeySize];
  for (int n = 0; n < kEntries; ++n) {
    FormatKey("key-", n, key);
    store->Set({key, kKeySize}, Value());
    store->Get({key, kKeySize});
  }
  return store;
}

// Created on first use and kept to the end of the program.
template <typename T>
T* Shared(StorePolicy policy, std::unique_ptr<T> (*make)(StorePolicy)) {
  static std::mutex mu;
  static auto* const made = new std::map<StorePolicy, std::unique_ptr<T>>;
  std::lock_guard lock(mu);
  std::unique_ptr<T>& p = (*made)[policy];
  if (p == nullptr) p = make(policy);
  return p.get();
}

void BM_Hit(benchmark::State& state, StorePolicy policy, Pattern pattern) {
  Group* group = Shared<Group>(policy, NewWarmGroup);
  if (group == nullptr || group->Stats().store.items != kEntries) {
    state.SkipWithError("could not create and warm the group");
    return;
  }
  KeyStream keys(pattern, /*present=*/true, state.thread_index(), state.threads());
  for (auto _ : state) {
    absl::StatusOr<ByteView> v = group->Get(keys.Next());
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  if (group->Stats().loads != kEntries) state.SkipWithError("a Get of a warm key missed");
}

void BM_Miss(benchmark::State& state, StorePolicy policy, Pattern pattern) {
  Store* store = Shared<Store>(policy, NewFilledStore);
  if (store->Len() != kEntries) {
    state.SkipWithError("the store does not hold the whole data set");
    return;
  }
  KeyStream keys(pattern, /*present=*/false, state.thread_index(), state.threads());
  int64_t found = 0;
  for (auto _ : state) {
    std::optional<ByteView> v = store->Get(keys.Next());
    found += v.has_value() ? 1 : 0;
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  if (found != 0) state.SkipWithError("a Get of an absent key hit");
}

// A random cycle over 160 MiB of cache-line nodes (Sattolo's shuffle), so
// every step is a load that depends on the previous one and misses every
// cache, and the hardware prefetcher cannot guess the next.
void BM_PointerChase(benchmark::State& state) {
  struct alignas(64) Node {
    Node* next;
  };
  constexpr size_t kNodes = (size_t{160} << 20) / sizeof(Node);
  static Node* const nodes = [] {
    auto* n = new Node[kNodes];
    std::vector<uint32_t> order(kNodes);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(5);
    for (size_t i = kNodes - 1; i > 0; --i) {
      std::swap(order[i], order[std::uniform_int_distribution<size_t>(0, i - 1)(rng)]);
    }
    for (size_t i = 0; i < kNodes; ++i) n[order[i]].next = &n[order[(i + 1) % kNodes]];
    return n;
  }();
  Node* p = nodes;
  for (auto _ : state) {
    p = p->next;
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_PointerChase);

// Filled before a benchmark's timed runs (Setup runs outside them): filling
// 1M entries inside the first run would be timed by threads waiting for it.
template <StorePolicy P>
void WarmGroupFor(const benchmark::State&) {
  Shared<Group>(P, NewWarmGroup);
}
template <StorePolicy P>
void FillStoreFor(const benchmark::State&) {
  Shared<Store>(P, NewFilledStore);
}

template <StorePolicy P>
void Register(const char* policy_name) {
  const std::pair<const char*, Pattern> patterns[] = {
      {"hot8", Pattern::kHot8}, {"zipf", Pattern::kZipf}, {"uniform", Pattern::kUniform}};
  for (const auto& [name, pattern] : patterns) {
    const std::string suffix = std::string(policy_name) + "/" + name;
    benchmark::RegisterBenchmark(("BM_Hit/" + suffix).c_str(),
                                 [pattern](benchmark::State& s) { BM_Hit(s, P, pattern); })
        ->Setup(WarmGroupFor<P>)
        ->ThreadRange(1, 8)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_Miss/" + suffix).c_str(),
                                 [pattern](benchmark::State& s) { BM_Miss(s, P, pattern); })
        ->Setup(FillStoreFor<P>)
        ->ThreadRange(1, 8)
        ->UseRealTime();
  }
}

const bool registered = [] {
  Register<StorePolicy::kLru>("lru");
  Register<StorePolicy::kLru2>("lru2");
  Register<StorePolicy::kTinyLfu>("tinylfu");
  return true;
}();

}  // namespace
}  // namespace lcache::bench
