// The caches lcache-sim replays traces through.
//
// lru, lru2 and tinylfu are the library's real stores, driven through the
// public lcache::Store interface as a read-through cache would drive them
// (Get; on a miss, Set). They get one shard, so that eviction is exact
// rather than per shard, and every entry has the same charge (an 8-byte key
// and a fixed-size value), so a capacity of N entries is N x charge bytes.
//
// arc (Megiddo and Modha, FAST 2003), sieve (Zhang et al., NSDI 2024),
// s3fifo (Yang et al., SOSP 2023), lfu (perfect LFU: exact, never-aged
// counts of every key seen, the most counted kept) and opt (Belady's offline
// optimum: on a miss with a full cache, drop the key whose next use is
// farthest away, possibly the new one) are reference implementations here,
// counting entries. None is thread-safe; each Access is O(1) for arc, O(1)
// amortized for sieve and s3fifo, and O(log size) for lfu and opt.

#ifndef LCACHE_TOOLS_SIM_POLICIES_H_
#define LCACHE_TOOLS_SIM_POLICIES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "sim/trace.h"

namespace lcache::sim {

class CachePolicy {
 public:
  virtual ~CachePolicy() = default;
  // Serves one request for `key`; returns whether it was a hit. On a miss the
  // key is loaded (if the policy keeps it).
  virtual bool Access(uint32_t key) = 0;
};

// The names --policies accepts, in the default order. Also accepted:
// "tinylfu-fixed", the tinylfu store with its window fixed at 1%, and
// "tinylfu-fixed:F", fixed at the fraction F of the cache (0 < F < 1).
const std::vector<std::string>& PolicyNames();

// For each request i of `keys`, the index of the next request for the same
// key, or keys.size() if there is none. What opt needs.
std::vector<uint32_t> NextUses(const std::vector<uint32_t>& keys, uint32_t key_space);

struct CacheConfig {
  int64_t entries = 0;        // capacity in entries
  int64_t entry_charge = 16;  // len(key) + len(value) of every entry, for the real stores
  uint32_t key_space = 0;     // keys are below this
  // opt only: NextUses() of the trace that will be replayed, from its start.
  const std::vector<uint32_t>* next_uses = nullptr;
  // Real stores: whether their policy's own memory (tinylfu's sketch and
  // window tuner) counts against the entries' bytes, as it does in a node
  // (StoreOptions::count_policy_memory). Off, every store holds `entries`
  // entries, the reference policies' terms; --bytes turns it on.
  bool count_policy_memory = false;
};

// A cache of policy `name` (see PolicyNames) for `config`.
absl::StatusOr<std::unique_ptr<CachePolicy>> NewCachePolicy(std::string_view name,
                                                            const CacheConfig& config);

}  // namespace lcache::sim

#endif  // LCACHE_TOOLS_SIM_POLICIES_H_
