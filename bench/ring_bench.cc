// Consistent hashing: both ring kinds' balance and lookup cost, and what
// outlier ejection adds to RingPicker::PickPeer.
//
//   Owner/<kind>/<nodes>   HashRing::Owner over 64k distinct keys, read in a
//                          fixed order; counters carry the ring's balance
//                          over 1M keys ("key-0".."key-999999"): max/mean
//                          keys per node, and the keys that move when node
//                          N+1 joins, as a multiple of the ideal 1/(N+1).
//   Build/<kind>/<nodes>   building a ring (what every peer-set change costs).
//   PickPeer/<ejection>    RingPicker::PickPeer on a 10-node groupcache ring,
//                          ejection off (0) or on with every peer healthy (1).
//
// Nodes are "10.0.0.<i>:9000", i = 1..N: a cluster's addresses that differ
// in one octet. kind 0 = groupcache (CRC-32, 50 points), 1 = balanced
// (XXH3, 2000 points).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lcache/hash_ring.h"
#include "lcache/ring_picker.h"

namespace lcache::bench {
namespace {

std::vector<std::string> Nodes(int n) {
  std::vector<std::string> nodes;
  for (int i = 1; i <= n; ++i) nodes.push_back(absl::StrCat("10.0.0.", i, ":9000"));
  return nodes;
}

RingKind KindArg(int64_t arg) { return arg == 1 ? RingKind::kBalanced : RingKind::kGroupcache; }

// "key-0".."key-<n-1>": at most 15 characters, so no heap block per key.
const std::vector<std::string>& Keys(int n) {
  static std::mutex mu;
  static auto* const keys = new std::map<int, std::vector<std::string>>;
  std::lock_guard lock(mu);
  std::vector<std::string>& k = (*keys)[n];
  if (k.empty()) {
    k.reserve(n);
    for (int i = 0; i < n; ++i) k.push_back(absl::StrCat("key-", i));
  }
  return k;
}

struct Balance {
  double max_over_mean = 0;
  double moved_over_ideal = 0;
};

Balance Measure(RingKind kind, int nodes) {
  constexpr int kKeys = 1'000'000;
  const HashRing before(kind, Nodes(nodes));
  const HashRing after(kind, Nodes(nodes + 1));
  std::map<std::string_view, int> counts;
  int moved = 0;
  for (const std::string& key : Keys(kKeys)) {
    const std::string_view owner = before.Owner(key);
    ++counts[owner];
    moved += after.Owner(key) != owner;
  }
  int max_count = 0;
  for (const auto& [node, count] : counts) max_count = std::max(max_count, count);
  return {
      .max_over_mean = max_count / (static_cast<double>(kKeys) / nodes),
      .moved_over_ideal = (static_cast<double>(moved) / kKeys) * (nodes + 1),
  };
}

void BM_Owner(benchmark::State& state) {
  const RingKind kind = KindArg(state.range(0));
  const int nodes = static_cast<int>(state.range(1));
  const HashRing ring(kind, Nodes(nodes));
  const std::vector<std::string>& keys = Keys(1 << 16);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ring.Owner(keys[i]));
    i = (i + 1) & (keys.size() - 1);
  }
  state.SetLabel(RingKindName(kind));
  state.counters["points"] = static_cast<double>(ring.points());
  const Balance balance = Measure(kind, nodes);
  state.counters["max/mean"] = balance.max_over_mean;
  state.counters["moved/ideal"] = balance.moved_over_ideal;
}
BENCHMARK(BM_Owner)->ArgNames({"kind", "nodes"})->ArgsProduct({{0, 1}, {3, 10, 50}});

void BM_Build(benchmark::State& state) {
  const RingKind kind = KindArg(state.range(0));
  const std::vector<std::string> nodes = Nodes(static_cast<int>(state.range(1)));
  for (auto _ : state) {
    HashRing ring(kind, nodes);
    benchmark::DoNotOptimize(ring.points());
  }
  state.SetLabel(RingKindName(kind));
}
BENCHMARK(BM_Build)
    ->ArgNames({"kind", "nodes"})
    ->ArgsProduct({{0, 1}, {10, 50}})
    ->Unit(benchmark::kMicrosecond);

class NullPeer final : public PeerGetter {
 public:
  absl::StatusOr<PeerValue> Get(std::string_view, std::string_view) override {
    return ByteView::Copy("");
  }
};

void BM_PickPeer(benchmark::State& state) {
  const bool ejection = state.range(0) != 0;
  RingPicker picker(
      "10.0.0.1:9000", [](const std::string&) { return std::make_shared<NullPeer>(); },
      RingPickerOptions{.kind = RingKind::kGroupcache,
                        .replicas = 0,
                        .ejection = {.after_failures = ejection ? 3 : 0}});
  picker.SetPeers(Nodes(10));
  const std::vector<std::string>& keys = Keys(1 << 16);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(picker.PickPeer(keys[i]));
    i = (i + 1) & (keys.size() - 1);
  }
}
BENCHMARK(BM_PickPeer)->ArgName("ejection")->Arg(0)->Arg(1);

}  // namespace
}  // namespace lcache::bench
