// Store: the local, in-memory, byte-bounded part of the cache.
//
// A Store maps keys to immutable values and evicts by policy when the bytes it
// holds (len(key) + len(value) per entry, as in the Go lru_cache) would exceed
// its capacity. Every operation is O(1) (amortized over table growth).
//
// Layout: each entry is one allocation holding its list links, key and value
// (see src/store/entry.h), so a hit hands out a ByteView into the entry itself and
// the per-entry overhead is what Stats().overhead_bytes reports.
//
// Concurrency: safe for concurrent use without external synchronization. The
// store is split into shards keyed by the key's hash, each with its own mutex,
// list(s) and an even share of the capacity; eviction is per shard, so the
// entry evicted is the least recently used *of its shard* (for kLru and
// LRU-2's main list, approximately: they are CLOCKs). Small stores get
// fewer shards (see StoreOptions::shards) so that per-shard capacity stays
// meaningful. With kLru and kLru2 a hit takes no mutex (src/store/
// sharded_store.h): a value of up to 256 bytes that other threads hold at
// the time of a hit is copied out from then on rather than shared, so that
// threads reading the same hot keys write no common cache line; evicted
// entries are freed a little later (Stats().overhead_bytes counts them).
//
// Expiration: an entry may carry an expiry time. An expired entry is never
// returned; a read that finds one removes it and counts a miss and an
// expiration. Expired entries nobody reads are reclaimed incrementally: in a
// shard that holds expiring entries, every Set examines a few entries from the
// cold end, and ReclaimExpired() lets an owner sweep on a timer
// (GroupRegistry::StartReclaimer does).

#ifndef LCACHE_STORE_H_
#define LCACHE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "absl/time/time.h"
#include "lcache/byte_view.h"
#include "lcache/clock.h"

namespace lcache {

enum class StorePolicy {
  kLru,   // least recently used
  kLru2,  // LRU-2: a history queue for keys seen once, the main queue for keys seen twice
  // W-TinyLFU: a window LRU, then a frequency sketch deciding whether a new
  // key may replace the main region's victim; adaptive window (docs/EVICTION.md)
  kTinyLfu,
};

// "lru" / "lru2" / "tinylfu"; nullopt for anything else.
std::optional<StorePolicy> ParseStorePolicy(std::string_view name);
std::string_view StorePolicyName(StorePolicy policy);

// The longest key a store can hold (the entry layout keeps its length in 16 bits).
inline constexpr size_t kMaxStoreKeyBytes = 65535;

enum class RemovalReason { kEvicted, kExpired, kReplaced, kRemoved };

// Called after an entry left the store, outside the store's locks, so it may
// call back into the store. `value` stays valid as long as the caller keeps it.
using RemovalCallback =
    std::function<void(std::string_view key, const ByteView& value, RemovalReason reason)>;

struct StoreOptions {
  StorePolicy policy = StorePolicy::kLru;
  // Budget of len(key) + len(value) over all entries, and of the policy's
  // own structures (tinylfu's frequency sketch and window tuner, see
  // count_policy_memory). 0 means unbounded.
  int64_t capacity_bytes = 0;
  // Number of lock shards, each with capacity_bytes / shards. 0 picks one
  // shard per MiB of capacity, at most 64 (64 when unbounded). An entry must
  // fit its shard's share (for LRU-2, its shard's history share); lower the
  // count for stores of few, large values.
  int shards = 0;
  // LRU-2 only: the history queue's share of each shard's capacity.
  double lru2_history_fraction = 0.25;
  // TinyLFU only: the window's initial share of each shard's capacity, and
  // whether the hill climber may move it (false: a fixed window).
  double tinylfu_window_fraction = 0.01;
  bool tinylfu_adaptive_window = true;
  // Whether the policy's own structures count against capacity_bytes (at
  // most half of it). They always count in Stats().overhead_bytes. lcache-sim
  // turns this off to compare policies at equal entry counts.
  bool count_policy_memory = true;
  // Source of time for expiration. Null means Clock::Real().
  const Clock* clock = nullptr;
  // Optional; called for evictions, expirations, replacements and removals.
  RemovalCallback on_removal = nullptr;
};

struct StoreStats {
  int64_t items = 0;
  int64_t bytes = 0;  // len(key) + len(value), what the capacity counts
  int64_t capacity_bytes = 0;
  // Memory the store uses beyond `bytes`: entry headers, allocator rounding
  // (assuming glibc's 16-byte chunk granularity), hash table buckets, and
  // the policy's own structures (tinylfu: its sketch and window tuner).
  int64_t overhead_bytes = 0;
  // Of overhead_bytes, what the policy's own structures take (tinylfu's
  // sketch and window tuner; 0 for lru and lru2).
  int64_t policy_bytes = 0;
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t evictions = 0;
  int64_t expirations = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // The value of `key` if present and not expired.
  virtual std::optional<ByteView> Get(std::string_view key) = 0;

  // Get, with the entry's expiry: what a server needs to tell a peer how
  // long its copy may live.
  virtual std::optional<ExpiringValue> GetWithExpiry(std::string_view key) = 0;

  // GetWithExpiry that is not a use of the key: the policy is not told (no
  // reordering, no frequency count, no CLOCK bit), no hit or miss is
  // counted, and an expired entry is left for the sweep. For the cache's own
  // upkeep (a hand-off, a replica pass), whose reads are not demand and must
  // not make what they read look hot.
  virtual std::optional<ExpiringValue> Peek(std::string_view key) = 0;

  // Stores a copy of `value` under `key`, replacing any previous value. The
  // entry expires at `expire_at` (absl::InfiniteFuture() for never). Returns
  // false, storing nothing, when the key is longer than kMaxStoreKeyBytes or
  // the entry alone exceeds its queue's capacity (for LRU-2 a new key must
  // fit the history list); any previous value of the key is removed then.
  // A stored entry may still be evicted before Set returns: TinyLFU evicts a
  // new key at once when it loses the admission decision.
  virtual bool Set(std::string_view key, std::string_view value,
                   absl::Time expire_at = absl::InfiniteFuture()) = 0;

  // The largest len(key) + len(value) that Set can keep: an entry must fit
  // its shard's share of the capacity (for LRU-2, its history list's; for
  // TinyLFU counting its policy memory, half of it, the share the sketch
  // and the tuner can never take).
  // INT64_MAX for an unbounded store.
  virtual int64_t MaxEntryBytes() const = 0;

  // Calls `visit` for the keys of live entries, the most valuable first as
  // the policy ranks them (the most recently used; LRU-2's main list before
  // its history; TinyLFU's protected, then probation, then window), until
  // their len(key) + len(value) reach about `max_bytes`. Each shard
  // contributes up to its share, interleaved rank by rank, or until `visit`
  // returns false. `visit` runs outside the store's locks and may call into
  // the store. The keys are a snapshot taken first: a key may be gone or
  // replaced by the time it is visited (read it with Peek, which is no use
  // of it). The pass holds no entry: what the store drops meanwhile is
  // freed, and hits meanwhile do not find their values held by someone else
  // (which would mark them contended: src/store/sharded_store.h). For a
  // departing node's hand-off and a replica pass, which should hold a value
  // no longer than it takes to send it.
  using KeyVisitor = std::function<bool(std::string_view key)>;
  virtual void ForEachKeyByValue(int64_t max_bytes, const KeyVisitor& visit) = 0;

  // ForEachKeyByValue with each key's live value, read when it is visited
  // (with Peek): a key gone or expired by then is skipped. The value is held
  // while `visit` runs.
  using ValueVisitor = std::function<bool(std::string_view key, const ExpiringValue& v)>;
  void ForEachByValue(int64_t max_bytes, const ValueVisitor& visit);

  // Removes `key`; returns whether it was present.
  virtual bool Remove(std::string_view key) = 0;

  // Examines up to `max_entries` entries per shard, coldest first, continuing
  // where the previous sweep stopped, and removes the expired ones. Returns
  // how many it removed.
  virtual int64_t ReclaimExpired(int64_t max_entries) = 0;

  virtual int64_t Len() const = 0;
  virtual int64_t Bytes() const = 0;
  virtual StoreStats Stats() const = 0;
};

std::unique_ptr<Store> NewStore(const StoreOptions& options);

}  // namespace lcache

#endif  // LCACHE_STORE_H_
