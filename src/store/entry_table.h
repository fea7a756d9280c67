// EntryTable: a shard's index from key to entry, chained through the entries.
//
// Like leveldb's HandleTable: each entry carries its own `next_hash` link, so
// the table itself is only an array of bucket heads. It doubles when it holds
// more than kMaxLoad entries per bucket, so the load stays in (1.5, 3] and a
// bucket costs at most 8 / 1.5 = 5.3 bytes per entry, against 9 / (0.44 to
// 0.875) = 10 to 20 for a Swiss table of pointers. For small values that
// decides whether a cache stays within 1.5x of its budget: with 16-byte keys
// and 100-byte values an entry is a 160-byte malloc chunk, and 1.5 x 116 =
// 174 leaves ~8 bytes for the index and the process's own baseline.
//
// The price is paid in lookups: each entry on a chain is a dependent load
// (a cache miss on a large cache), where a Swiss table rejects non-matching
// slots by their control bytes. Measured on 1M entries (docs/BENCHMARKS.md),
// a miss costs ~280 ns instead of ~40 and a hit ~60 ns more. For a
// read-through cache a miss goes on to a load that costs far more, so memory
// per entry wins.
//
// Entries keep no hash: growing and erasing recompute it from the key, which
// for short keys costs less than the 4 bytes per entry would.
//
// Not thread-safe: the owning shard's mutex guards it.

#ifndef LCACHE_SRC_STORE_ENTRY_TABLE_H_
#define LCACHE_SRC_STORE_ENTRY_TABLE_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "store/entry.h"

namespace lcache::internal {

// The 64-bit hash of a key. The store picks a shard with its high half and a
// bucket with its low bits. Hashed as absl::string_view: in Debian's abseil
// that is its own type, and absl::Hash<std::string_view> falls back to
// std::hash instead of abseil's faster string hash.
inline uint64_t HashKey(std::string_view key) {
  return absl::Hash<absl::string_view>{}(absl::string_view(key.data(), key.size()));
}

class EntryTable {
 public:
  EntryTable() : buckets_(kInitialBuckets, nullptr) {}

  Entry* Find(std::string_view key, uint64_t hash) const {
    for (Entry* e = buckets_[hash & Mask()]; e != nullptr; e = e->next_hash) {
      if (e->key() == key) return e;
    }
    return nullptr;
  }

  // REQUIRES: no entry with e's key is present; `hash` is HashKey(e->key()).
  void Insert(Entry* e, uint64_t hash) {
    Entry*& head = buckets_[hash & Mask()];
    e->next_hash = head;
    head = e;
    if (++size_ > buckets_.size() * kMaxLoad) Grow();
  }

  // REQUIRES: e is present.
  void Erase(Entry* e) {
    Entry** link = &buckets_[HashKey(e->key()) & Mask()];
    while (*link != e) link = &(*link)->next_hash;
    *link = e->next_hash;
    e->next_hash = nullptr;
    --size_;
  }

  size_t size() const { return size_; }
  size_t bucket_count() const { return buckets_.size(); }

  template <typename F>
  void ForEach(F f) const {
    for (Entry* head : buckets_) {
      for (Entry* e = head; e != nullptr;) {
        Entry* next = e->next_hash;  // f may free e
        f(e);
        e = next;
      }
    }
  }

 private:
  static constexpr size_t kInitialBuckets = 16;  // a power of two
  static constexpr size_t kMaxLoad = 3;

  size_t Mask() const { return buckets_.size() - 1; }

  void Grow() {
    std::vector<Entry*> bigger(buckets_.size() * 2, nullptr);
    const size_t mask = bigger.size() - 1;
    ForEach([&](Entry* e) {
      Entry*& head = bigger[HashKey(e->key()) & mask];
      e->next_hash = head;
      head = e;
    });
    buckets_.swap(bigger);
  }

  std::vector<Entry*> buckets_;
  size_t size_ = 0;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_ENTRY_TABLE_H_
