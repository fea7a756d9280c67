// ShardedStore<Policy>: the machinery every eviction policy shares.
//
// A store is an array of shards picked by the key's 64-bit hash. A shard owns
// a hash table of entries, the counters and a Policy object that owns the
// recency lists and decides where entries go (lru_store.cc, lru2_store.cc).
// The Policy never touches the table; the shard never decides order.
//
// A Policy provides:
//   Policy(int64_t shard_capacity, const StoreOptions&)
//   LruList& QueueOf(const Entry*)               the list an entry is on
//   LruList* Admit(Entry* e, const Entry* old)   the list a new entry joins, or null to
//                                                reject it; `old` is the entry it replaces
//   LruList* Touch(Entry* e)                     on a hit: reorder; returns a list that may
//                                                now be over capacity, or null
//   template <class F> void ForEachQueue(F f)    every list, the least valuable first
//                                                (a hand-off reads them the other way)
// and optionally (tinylfu_store.cc uses them):
//   Entry* NextVictim()                          instead of the returned list's tail while
//                                                it is over capacity: the next entry to
//                                                evict, or null when all is within budget
//   uint64_t Hint(std::string_view key) const    at the start of a Get, before the lock (so
//                                                it must be thread-safe): work on the key
//                                                kept out of the critical section, whose
//                                                result goes to...
//   LruList* Touch(Entry* e, uint64_t hint)      ...the Touch of the same Get
//   int64_t PolicyBytes() const                  memory the policy itself holds, for
//                                                Stats().overhead_bytes
//   static constexpr bool kMarksHits             its lists are CLOCKs (Entry::referenced):
//                                                marked entries are the most valuable
//   bool MarkHitWithoutLock(Entry* e)            a hit that needs no reordering: record it
//                                                with atomic flag writes only, or return
//                                                false to have it finished under the lock
//                                                (Touch). Makes the store's hits lock-free
//                                                (below).
//
// Lock-free hits. With MarkHitWithoutLock, a Get first looks the key up
// without the shard's mutex, under an Epochs::ReadGuard (epochs.h): entries
// and bucket arrays the shard drops are retired, not freed, until no such
// reader can hold them, so the entry it finds still holds the store's
// reference and may be shared (one atomic increment of its count, on a line
// the lookup has just read). An entry whose value someone else holds at the
// moment of a hit (its count above the store's one) is likely read by other
// threads too: it is marked, and from then on a value of up to
// kMaxCopiedValue bytes is copied out instead (into cache lines of its own,
// which the thread reuses: ByteView::CopyToOwnLines), so that the hit writes no
// line another thread reads: not the mutex, not the reference count, not a
// shared counter (while at most 16 threads count: thread_counters.h). Hot
// keys read by many threads then scale with the threads instead of bouncing
// those lines between cores, while a cold hit does not
// pay for a copy (nor read the value's bytes). A miss that the bucket's
// filter proves (most misses: entry_table.h) is answered without the lock
// too; one found by walking a chain (which a writer may be relinking) must
// be confirmed under it, and an expired entry takes the locked path; a hit
// the policy must reorder is finished under the lock on the entry found, if
// it is still in the shard, rather than looked up again. TinyLFU, whose every
// hit reorders and counts, only marks contended entries' hits without the
// lock, and applies one in 64 of them (tinylfu_store.cc).
//
// Work under a shard's mutex is pointer surgery only: entries are allocated
// before taking it, and removed entries are released (and reported to the
// removal callback) after dropping it.

#ifndef LCACHE_SRC_STORE_SHARDED_STORE_H_
#define LCACHE_SRC_STORE_SHARDED_STORE_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lcache/store.h"
#include "store/entry.h"
#include "store/entry_table.h"
#include "store/epochs.h"
#include "store/lru_list.h"
#include "store/shard_mutex.h"
#include "store/thread_counters.h"

namespace lcache::internal {

// Entries that left a shard, with the store's reference, to release after
// the shard's mutex is dropped. Usually empty, so it rarely allocates.
// (absl::InlinedVector would avoid that allocation, but GCC 12 at -O3 flags
// it with a false -Wmaybe-uninitialized.)
using Removed = std::vector<std::pair<Entry*, RemovalReason>>;

// Keys laid end to end in one buffer (a shard's snapshot for
// ForEachKeyByValue): two allocations that grow by doubling, where a string per
// key would be an allocation each under the shard's mutex.
class KeyList {
 public:
  void Add(std::string_view key) {
    bytes_.append(key);
    ends_.push_back(bytes_.size());
  }
  size_t size() const { return ends_.size(); }
  std::string_view operator[](size_t i) const {
    const size_t begin = i == 0 ? 0 : ends_[i - 1];
    return std::string_view(bytes_).substr(begin, ends_[i] - begin);
  }

 private:
  std::string bytes_;
  std::vector<size_t> ends_;
};

// What a policy's MaxCharge returns when any entry fits (an unbounded store).
inline constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

// Entries examined per Set by the incremental expiry sweep, per list.
inline constexpr int kSweepPerSet = 2;

// Lock-free hits of contended entries copy values up to this size; larger
// ones are always shared, since copying them would cost more than the
// contention it avoids.
inline constexpr size_t kMaxCopiedValue = 256;

template <typename Policy>
class alignas(64) Shard {
 public:
  static constexpr bool kLockFreeHits = requires(Policy p, Entry* e) { p.MarkHitWithoutLock(e); };

  Shard(int64_t capacity, const StoreOptions& options)
      : retired_(RetiredBytesBound(capacity)),
        table_(kLockFreeHits ? &retired_ : nullptr),
        policy_(capacity, options) {}

  // How GetWithoutLock answered.
  enum class Answer {
    kWithoutLock,  // a hit or a miss the bucket's filter proved: the caller counts it
    kUnderLock,    // a hit the policy finishes under the lock: the shard counted it
    kNone,         // the caller must take the locked path (Get)
  };

  // A lock-free hit or miss (see the top of the file): the entry's value,
  // shared or copied, or nullopt. A hit the policy will not mark without
  // the lock is finished under it, on the entry found.
  std::optional<ByteView> GetWithoutLock(std::string_view key, uint64_t hash, const Clock& clock,
                                         Removed* out, Answer* answer,
                                         absl::Time* expire_at = nullptr) {
    *answer = Answer::kNone;
    Epochs::ReadGuard reading;
    bool absent = false;
    Entry* e = table_.FindWithoutLock(key, hash, &absent);
    if (e == nullptr) {
      if (absent) *answer = Answer::kWithoutLock;
      return std::nullopt;
    }
    absl::Time expires = absl::InfiniteFuture();
    if (e->has_expiry()) {
      const int64_t at = e->expire_unix_nanos();
      if (at <= absl::ToUnixNanos(clock.Now())) return std::nullopt;  // the locked path erases it
      expires = absl::FromUnixNanos(at);
    }
    if (!policy_.MarkHitWithoutLock(e)) {
      *answer = Answer::kUnderLock;
      return LockedGet(e, key, hash, clock, out, expire_at);
    }
    *answer = Answer::kWithoutLock;
    if (expire_at != nullptr) *expire_at = expires;
    if (e->copy_on_hit()) return ByteView::CopyToOwnLines(e->value());
    NoteSharing(e);
    return e->ShareValue();
  }

  // An entry whose value someone else holds at the moment of a hit is
  // likely read by other threads too: it is marked contended, and if its
  // value is small, copied out by the next lock-free hits.
  static void NoteSharing(Entry* e) {
    if (e->block.refs.load(std::memory_order_relaxed) <= 1 || e->contended()) return;
    e->set_contended();
    if (e->value_size <= kMaxCopiedValue) e->set_copy_on_hit();
  }

  // Removed entries wait for lock-free readers: at most an eighth of the
  // shard's bytes (and 64 KiB to 1 MiB) before a reclaim is tried.
  static size_t RetiredBytesBound(int64_t capacity) {
    return static_cast<size_t>(std::clamp<int64_t>(capacity / 8, 64 << 10, 1 << 20));
  }

  // The store's reference to a removed entry: dropped at once, or once no
  // lock-free reader can hold the entry.
  void Drop(Entry* e) {
    if constexpr (kLockFreeHits) {
      retired_.Retire(
          e, [](void* p) { static_cast<Entry*>(p)->Unref(); },
          static_cast<size_t>(e->charge() + e->overhead()));
    } else {
      e->Unref();
    }
  }

  // A view of the live value of `key`, or nullopt; with `expire_at` not
  // null, also its expiry. Under the mutex: the policy's Touch may reorder.
  std::optional<ByteView> Get(std::string_view key, uint64_t hash, const Clock& clock, Removed* out,
                              absl::Time* expire_at = nullptr) {
    return LockedGet(nullptr, key, hash, clock, out, expire_at);
  }

 private:
  // Get, starting from `found` (the lock-free lookup's entry, which the
  // caller's ReadGuard keeps allocated) when it is still in the shard: it is
  // then linked in one of the policy's lists, since every removal unlinks.
  // The lock is taken inside the guard. Nothing waits for readers, so that
  // cannot deadlock; but while this reader waits for the lock and holds it,
  // no store of the process frees what it retires (memory, bounded by that
  // wait: critical sections are pointer surgery). Re-finding the key after
  // leaving the guard would cost a second lookup on every such hit.
  std::optional<ByteView> LockedGet(Entry* found, std::string_view key, uint64_t hash,
                                    const Clock& clock, Removed* out, absl::Time* expire_at) {
    bool copy_out = false;
    std::optional<ByteView> shared =
        LockedShare(found, key, hash, clock, out, expire_at, &copy_out);
    // Outside the lock: a copy may allocate (ByteView::CopyToOwnLines).
    if (copy_out) return ByteView::CopyToOwnLines(shared->view());
    return shared;
  }

  // LockedGet's part under the lock. Sets *copy_out when the value found
  // should be copied out rather than shared.
  std::optional<ByteView> LockedShare(Entry* found, std::string_view key, uint64_t hash,
                                      const Clock& clock, Removed* out, absl::Time* expire_at,
                                      bool* copy_out) {
    constexpr bool kHinted = requires { policy_.Hint(key); };
    uint64_t hint = 0;
    if constexpr (kHinted) hint = policy_.Hint(key);
    std::lock_guard lock(mu_);
    const bool linked = found != nullptr &&
                        (found->prev != nullptr || found->next != nullptr ||
                         policy_.QueueOf(found).head() == found);
    Entry* e = linked ? found : table_.Find(key, hash);
    if (e == nullptr) {
      ++misses_;
      return std::nullopt;
    }
    if (e->has_expiry() && e->ExpiredAt(absl::ToUnixNanos(clock.Now()))) {
      Erase(e, RemovalReason::kExpired, out);
      ++misses_;
      return std::nullopt;
    }
    ++hits_;
    LruList* grown;
    if constexpr (kHinted) {
      grown = policy_.Touch(e, hint);
    } else {
      grown = policy_.Touch(e);
    }
    if (grown != nullptr) EvictOverflow(*grown, clock, out);
    if (expire_at != nullptr) *expire_at = ExpiryOf(e);
    if constexpr (kLockFreeHits) {
      // A policy may send hits here that it would not mark without the lock
      // (TinyLFU's, LRU-2's in history): they are found contended here too,
      // and treated alike.
      *copy_out = e->copy_on_hit();
      if (!*copy_out) NoteSharing(e);
    }
    return e->ShareValue();
  }

 public:
  // Takes over the caller's reference to `e`, unless the policy rejects it:
  // then it returns false and the caller still owns `e`. A rejected entry
  // still replaces (removes) the key's previous value, which is stale.
  bool Insert(Entry* e, uint64_t hash, const Clock& clock, Removed* out) {
    std::lock_guard lock(mu_);
    Entry* old = table_.Find(e->key(), hash);
    if (old != nullptr) Erase(old, RemovalReason::kReplaced, out);
    LruList* queue = policy_.Admit(e, old);
    if (queue == nullptr) return false;
    queue->PushFront(e);
    table_.Insert(e, hash);
    overhead_ += e->overhead();
    if (e->has_expiry()) ++expiring_;
    EvictOverflow(*queue, clock, out);
    Sweep(kSweepPerSet, clock, out);
    return true;
  }

  bool Remove(std::string_view key, uint64_t hash, Removed* out) {
    std::lock_guard lock(mu_);
    Entry* e = table_.Find(key, hash);
    if (e == nullptr) return false;
    Erase(e, RemovalReason::kRemoved, out);
    return true;
  }

  int64_t ReclaimExpired(int64_t max_entries, const Clock& clock, Removed* out) {
    std::lock_guard lock(mu_);
    return Sweep(max_entries, clock, out);
  }

  void AddStats(StoreStats* s) const {
    std::lock_guard lock(mu_);
    s->items += static_cast<int64_t>(table_.size());
    s->overhead_bytes += overhead_ + static_cast<int64_t>(table_.bucket_count() * sizeof(Entry*)) +
                         static_cast<int64_t>(retired_.pending_bytes());
    if constexpr (requires { policy_.PolicyBytes(); }) {
      s->overhead_bytes += policy_.PolicyBytes();
      s->policy_bytes += policy_.PolicyBytes();
    }
    s->hits += hits_;
    s->misses += misses_;
    s->evictions += evictions_;
    s->expirations += expirations_;
    const_cast<Policy&>(policy_).ForEachQueue([&](const LruList& q) { s->bytes += q.bytes(); });
  }

  // The live value of `key` and its expiry, with no trace: no Touch, no
  // count, no mark, no erase (Store::Peek).
  std::optional<ExpiringValue> Peek(std::string_view key, uint64_t hash, const Clock& clock) {
    std::lock_guard lock(mu_);
    const Entry* e = table_.Find(key, hash);
    if (e == nullptr) return std::nullopt;
    if (e->has_expiry() && e->ExpiredAt(absl::ToUnixNanos(clock.Now()))) return std::nullopt;
    return ExpiringValue(e->ShareValue(), ExpiryOf(e));
  }

  // When `e` expires: absl::InfiniteFuture() for never.
  static absl::Time ExpiryOf(const Entry* e) {
    return e->has_expiry() ? absl::FromUnixNanos(e->expire_unix_nanos()) : absl::InfiniteFuture();
  }

  // Appends the keys of live entries, most valuable first (the policy's
  // lists from the last ForEachQueue visits to the first, each from its
  // head; in a CLOCK list, those hit since the hand last passed them
  // first), until their charges reach `budget`. Keys, not references: an
  // entry held for a whole pass would look read by another thread to every
  // hit meanwhile (NoteSharing), and would outlive its eviction.
  void CollectValuable(int64_t budget, const Clock& clock, KeyList* out) const {
    std::lock_guard lock(mu_);
    std::array<const LruList*, 4> lists{};
    size_t n = 0;
    const_cast<Policy&>(policy_).ForEachQueue([&](const LruList& q) {
      assert(n < lists.size());
      lists[n++] = &q;
    });
    const int64_t now = absl::ToUnixNanos(clock.Now());
    constexpr bool kMarksHits = requires { Policy::kMarksHits; };
    std::vector<const Entry*> unmarked;  // of the current list, after its marked ones
    for (size_t i = n; i-- > 0 && budget > 0;) {
      // One pass, reading each bit once: lock-free hits set bits meanwhile,
      // and an entry read twice could be skipped by both passes.
      unmarked.clear();
      for (const Entry* e = lists[i]->head(); e != nullptr && budget > 0; e = e->next) {
        if (e->ExpiredAt(now)) continue;
        if (kMarksHits && !e->referenced()) {
          unmarked.push_back(e);
          continue;
        }
        out->Add(e->key());
        budget -= e->charge();
      }
      for (size_t k = 0; k < unmarked.size() && budget > 0; ++k) {
        out->Add(unmarked[k]->key());
        budget -= unmarked[k]->charge();
      }
    }
  }

  int64_t MaxCharge() const { return policy_.MaxCharge(); }

  int64_t Len() const {
    std::lock_guard lock(mu_);
    return static_cast<int64_t>(table_.size());
  }

  ~Shard() {
    table_.ForEach([](Entry* e) { e->Unref(); });
  }

 private:
  Entry* NextVictim(LruList& queue) {
    if constexpr (requires { policy_.NextVictim(); }) {
      return policy_.NextVictim();
    } else {
      return queue.OverCapacity() ? queue.tail() : nullptr;
    }
  }

  void Erase(Entry* e, RemovalReason reason, Removed* out) {
    policy_.QueueOf(e).Unlink(e);
    table_.Erase(e);
    overhead_ -= e->overhead();
    if (e->has_expiry()) --expiring_;
    if (reason == RemovalReason::kEvicted) ++evictions_;
    if (reason == RemovalReason::kExpired) ++expirations_;
    out->emplace_back(e, reason);
  }

  void EvictOverflow(LruList& queue, const Clock& clock, Removed* out) {
    int64_t now = 0;
    bool have_now = false;
    while (Entry* victim = NextVictim(queue)) {
      bool expired = false;
      if (victim->has_expiry()) {
        if (!have_now) now = absl::ToUnixNanos(clock.Now()), have_now = true;
        expired = victim->ExpiredAt(now);
      }
      Erase(victim, expired ? RemovalReason::kExpired : RemovalReason::kEvicted, out);
    }
  }

  // Examines up to `budget` entries per list from the sweep cursors.
  int64_t Sweep(int64_t budget, const Clock& clock, Removed* out) {
    // Without a TTL there is nothing to find, and each visit is a cache miss.
    if (expiring_ == 0) return 0;
    int64_t removed = 0;
    int64_t now = 0;
    bool have_now = false;
    policy_.ForEachQueue([&](LruList& q) {
      for (int64_t i = std::min(budget, q.len()); i > 0; --i) {
        Entry* e = q.SweepNext();
        if (!e->has_expiry()) continue;
        if (!have_now) now = absl::ToUnixNanos(clock.Now()), have_now = true;
        if (e->ExpiredAt(now)) {
          Erase(e, RemovalReason::kExpired, out);
          ++removed;
        }
      }
    });
    return removed;
  }

  mutable ShardMutex mu_;
  RetireList retired_;  // before table_, which retires into it
  EntryTable table_;
  Policy policy_;
  int64_t overhead_ = 0;  // sum of entries' overhead()
  int64_t expiring_ = 0;  // entries with an expiry
  int64_t hits_ = 0;
  int64_t misses_ = 0;
  int64_t evictions_ = 0;
  int64_t expirations_ = 0;
};

// The number of shards for a capacity: one per MiB, 1 to 64.
int ShardCount(const StoreOptions& options);

template <typename Policy>
class ShardedStore final : public Store {
 public:
  explicit ShardedStore(const StoreOptions& options)
      : options_(options),
        clock_(options.clock != nullptr ? *options.clock : *Clock::Real()),
        num_shards_(ShardCount(options)) {
    const int64_t per_shard = options.capacity_bytes / num_shards_;
    shards_.reserve(num_shards_);
    for (int i = 0; i < num_shards_; ++i) {
      shards_.push_back(std::make_unique<Shard<Policy>>(per_shard, options));
    }
  }

  std::optional<ByteView> Get(std::string_view key) override { return Lookup(key, nullptr); }

  std::optional<ExpiringValue> GetWithExpiry(std::string_view key) override {
    absl::Time expire_at;
    std::optional<ByteView> v = Lookup(key, &expire_at);
    if (!v) return std::nullopt;
    return ExpiringValue(*std::move(v), expire_at);
  }

  std::optional<ExpiringValue> Peek(std::string_view key) override {
    const uint64_t h = HashKey(key);
    return ShardFor(h).Peek(key, h, clock_);
  }

  bool Set(std::string_view key, std::string_view value, absl::Time expire_at) override {
    const uint64_t h = HashKey(key);
    const bool has_expiry = expire_at != absl::InfiniteFuture();
    Entry* e = Entry::New(key, value, has_expiry ? absl::ToUnixNanos(expire_at) : 0, has_expiry);
    if (e == nullptr) return false;  // key too long for the entry layout
    Removed removed;
    Shard<Policy>& shard = ShardFor(h);
    const bool stored = shard.Insert(e, h, clock_, &removed);
    if (!stored) e->Unref();  // never published
    Release(shard, removed);
    return stored;
  }

  bool Remove(std::string_view key) override {
    const uint64_t h = HashKey(key);
    Removed removed;
    Shard<Policy>& shard = ShardFor(h);
    const bool found = shard.Remove(key, h, &removed);
    Release(shard, removed);
    return found;
  }

  int64_t ReclaimExpired(int64_t max_entries) override {
    int64_t n = 0;
    for (auto& shard : shards_) {
      Removed removed;
      n += shard->ReclaimExpired(max_entries, clock_, &removed);
      Release(*shard, removed);
    }
    return n;
  }

  int64_t MaxEntryBytes() const override { return shards_.front()->MaxCharge(); }

  // Each shard's most valuable entries up to its share of `max_bytes`, then
  // ranks interleaved across shards, so that a caller who stops early has
  // had every shard's best.
  void ForEachKeyByValue(int64_t max_bytes, const KeyVisitor& visit) override {
    if (max_bytes <= 0) return;
    std::vector<KeyList> ranked(shards_.size());
    // Rounded up without overflow: INT64_MAX means "everything".
    const int64_t share = max_bytes / num_shards_ + (max_bytes % num_shards_ != 0 ? 1 : 0);
    for (size_t s = 0; s < shards_.size(); ++s) {
      shards_[s]->CollectValuable(share, clock_, &ranked[s]);
    }
    for (size_t rank = 0;; ++rank) {
      bool any = false;
      for (const KeyList& keys : ranked) {
        if (rank >= keys.size()) continue;
        any = true;
        if (!visit(keys[rank])) return;
      }
      if (!any) return;
    }
  }

  int64_t Len() const override {
    int64_t n = 0;
    for (const auto& shard : shards_) n += shard->Len();
    return n;
  }

  int64_t Bytes() const override { return Stats().bytes; }

  StoreStats Stats() const override {
    StoreStats s;
    s.capacity_bytes = options_.capacity_bytes;
    for (const auto& shard : shards_) shard->AddStats(&s);
    s.hits += lock_free_.Sum(kHitsWithoutLock);
    s.misses += lock_free_.Sum(kMissesWithoutLock);
    return s;
  }

 private:
  // The high half of the hash picks the shard, the low bits the bucket.
  Shard<Policy>& ShardFor(uint64_t h) {
    return *shards_[((h >> 32) * static_cast<uint64_t>(num_shards_)) >> 32];
  }

  // Both Gets: lock-free first where the policy allows it, then locked.
  std::optional<ByteView> Lookup(std::string_view key, absl::Time* expire_at) {
    const uint64_t h = HashKey(key);
    Shard<Policy>& shard = ShardFor(h);
    Removed removed;
    if constexpr (Shard<Policy>::kLockFreeHits) {
      using Answer = typename Shard<Policy>::Answer;
      Answer answer;
      std::optional<ByteView> v = shard.GetWithoutLock(key, h, clock_, &removed, &answer, expire_at);
      if (answer == Answer::kUnderLock) {
        Release(shard, removed);
        return v;
      }
      if (answer == Answer::kWithoutLock) {
        lock_free_.Add(v.has_value() ? kHitsWithoutLock : kMissesWithoutLock);
        return v;
      }
    }
    std::optional<ByteView> v = shard.Get(key, h, clock_, &removed, expire_at);
    Release(shard, removed);
    return v;
  }

  void Release(Shard<Policy>& shard, Removed& removed) {
    for (auto& [e, reason] : removed) {
      if (options_.on_removal) options_.on_removal(e->key(), e->ShareValue(), reason);
      shard.Drop(e);
    }
  }

  const StoreOptions options_;
  const Clock& clock_;
  const int num_shards_;
  std::vector<std::unique_ptr<Shard<Policy>>> shards_;
  // Hits and misses answered without a shard's lock; the shards count the
  // others.
  enum { kHitsWithoutLock, kMissesWithoutLock };
  ThreadCounters<2> lock_free_;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_SHARDED_STORE_H_
