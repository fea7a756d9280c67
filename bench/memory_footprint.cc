// memory_footprint: how much memory a full store really takes.
//
// Creates a store with a 64 MiB budget, fills it with 16-byte keys and
// 100-byte values until it evicts, inserts about 10% more, and prints what
// the store counts (Bytes(), Stats().overhead_bytes) next to what the process
// uses (VmRSS from /proc/self/status, and glibc's own heap figures).
//
//   memory_footprint [--policy lru|lru2|tinylfu] [--budget_mib N]
//
// LRU fills with Set alone. LRU-2 keeps keys seen once in a history list (a
// quarter of the budget), so it fills in two phases: Set + Get of each new key
// fills the main list, then Set alone fills the history; each phase runs
// until the list it fills evicts, then about 10% longer.
//
// Keys are formatted on the fly so that no key table adds to the RSS.

#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "bench_data.h"
#include "lcache/store.h"

namespace lcache::bench {
namespace {

// VmRSS of this process in bytes, or -1 if /proc is unreadable.
int64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return -1;
}

double MiB(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

struct Filler {
  Store& store;
  int next_key = 0;

  // Inserts new keys (with a Get after each Set when `second_access`) until
  // the store's eviction count grows, then 10% of the store's entries more.
  void FillPhase(bool second_access) {
    const int64_t evictions_before = store.Stats().evictions;
    constexpr int kCheckEvery = 256;  // Stats() locks every shard
    while (store.Stats().evictions == evictions_before) {
      for (int i = 0; i < kCheckEvery; ++i) Insert(second_access);
    }
    for (int64_t i = store.Len() / 10; i > 0; --i) Insert(second_access);
  }

  void Insert(bool second_access) {
    char key[kKeySize];
    FormatKey("key-", next_key++, key);
    const std::string_view k(key, kKeySize);
    store.Set(k, Value());
    if (second_access) store.Get(k);
  }
};

int Run(StorePolicy policy, int64_t budget) {
  const int64_t baseline_rss = ResidentBytes();

  std::unique_ptr<Store> store = NewStore({.policy = policy, .capacity_bytes = budget});
  Filler filler{*store};
  if (policy == StorePolicy::kLru2) {
    filler.FillPhase(/*second_access=*/true);   // main
    filler.FillPhase(/*second_access=*/false);  // history
  } else {
    filler.FillPhase(/*second_access=*/false);
  }

  const int64_t rss = ResidentBytes();
  const StoreStats stats = store->Stats();
  const struct mallinfo2 heap = mallinfo2();
  const double budget_d = static_cast<double>(budget);
  const double items = static_cast<double>(stats.items);

  std::printf("policy:                  %s\n", std::string(StorePolicyName(policy)).c_str());
  std::printf("budget:                  %lld bytes (%.1f MiB)\n", static_cast<long long>(budget),
              MiB(budget));
  std::printf("keys inserted:           %d (16-byte keys, 100-byte values)\n", filler.next_key);
  std::printf("evictions:               %lld\n", static_cast<long long>(stats.evictions));
  std::printf("entries held:            %lld\n", static_cast<long long>(stats.items));
  std::printf("Bytes():                 %lld (%.1f%% of budget)\n",
              static_cast<long long>(store->Bytes()),
              100.0 * static_cast<double>(store->Bytes()) / budget_d);
  std::printf("overhead_bytes:          %lld (%.1f per entry)\n",
              static_cast<long long>(stats.overhead_bytes),
              static_cast<double>(stats.overhead_bytes) / items);
  std::printf("  of which policy_bytes:  %lld (the policy's own structures)\n",
              static_cast<long long>(stats.policy_bytes));
  std::printf("(bytes+overhead)/budget: %.3f\n",
              static_cast<double>(stats.bytes + stats.overhead_bytes) / budget_d);
  std::printf("baseline RSS:            %.1f MiB (before creating the store)\n", MiB(baseline_rss));
  std::printf("RSS:                     %.1f MiB (%lld bytes)\n", MiB(rss),
              static_cast<long long>(rss));
  std::printf("RSS/budget:              %.3f\n", static_cast<double>(rss) / budget_d);
  std::printf("(RSS-baseline)/budget:   %.3f\n",
              static_cast<double>(rss - baseline_rss) / budget_d);
  std::printf("(RSS-baseline)/entry:    %.1f bytes\n",
              static_cast<double>(rss - baseline_rss) / items);
  std::printf(
      "malloc in use:           %.1f MiB (heap %.1f MiB, mmapped %.1f MiB, free %.1f MiB)\n",
      MiB(static_cast<int64_t>(heap.uordblks + heap.hblkhd)), MiB(static_cast<int64_t>(heap.arena)),
      MiB(static_cast<int64_t>(heap.hblkhd)), MiB(static_cast<int64_t>(heap.fordblks)));
  return 0;
}

int Usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--policy lru|lru2|tinylfu] [--budget_mib N]\n", argv0);
  return 2;
}

}  // namespace
}  // namespace lcache::bench

int main(int argc, char** argv) {
  using lcache::bench::Usage;
  lcache::StorePolicy policy = lcache::StorePolicy::kLru;
  int64_t budget_mib = 64;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    std::string_view value;
    std::string_view name = arg;
    if (const size_t eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Usage(argv[0]);
    }
    if (name == "--policy") {
      std::optional<lcache::StorePolicy> p = lcache::ParseStorePolicy(value);
      if (!p) return Usage(argv[0]);
      policy = *p;
    } else if (name == "--budget_mib") {
      budget_mib = std::atoll(std::string(value).c_str());
      if (budget_mib <= 0) return Usage(argv[0]);
    } else {
      return Usage(argv[0]);
    }
  }
  return lcache::bench::Run(policy, budget_mib << 20);
}
