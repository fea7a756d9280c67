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
// slots by their control bytes. So a bucket is one word that also carries a
// filter: the chain's first entry in its low 48 bits (what x86-64 and arm64
// user addresses use), and in its high 16 bits two bits per key on the chain,
// picked by bits of its hash that choose neither the shard nor the bucket. A
// lookup whose two bits are not both set is a miss without touching an entry:
// most misses, at no memory cost (a chain of two keys sets about 4 of the 16
// bits, so a miss walks it about 5% of the time). Erasing an entry leaves
// its bits behind (clearing them would mean rehashing the chain); a lookup
// that walks a chain in vain rebuilds its filter, so a stale bit costs at
// most one walk. Should malloc ever hand out an address above 2^48, the table
// stores plain pointers from then on and every lookup walks its chain.
//
// A hit still walks its chain up to its entry: the filter says whether the
// key may be there, not where.
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
  EntryTable() : buckets_(kInitialBuckets, 0) {}

  // Whether Find must walk a chain for a key of this hash: false means the
  // bucket's filter rules the key out.
  bool MayHold(uint64_t hash) const {
    const uint64_t bits = FilterBits(hash);
    return (buckets_[hash & Mask()] & bits) == bits;
  }

  Entry* Find(std::string_view key, uint64_t hash) {
    uint64_t& bucket = buckets_[hash & Mask()];
    const uint64_t bits = FilterBits(hash);
    if ((bucket & bits) != bits) return nullptr;  // the filter rules the key out
    for (Entry* e = Head(bucket); e != nullptr; e = e->next_hash) {
      if (e->key() == key) return e;
    }
    if (bits != 0 && bucket != 0) Refilter(bucket);
    return nullptr;
  }

  // REQUIRES: no entry with e's key is present; `hash` is HashKey(e->key()).
  void Insert(Entry* e, uint64_t hash) {
    if ((reinterpret_cast<uint64_t>(e) & ~pointer_mask_) != 0) StorePlainPointers();
    uint64_t& bucket = buckets_[hash & Mask()];
    e->next_hash = Head(bucket);
    bucket = reinterpret_cast<uint64_t>(e) | (bucket & ~pointer_mask_) | FilterBits(hash);
    if (++size_ > buckets_.size() * kMaxLoad) Grow();
  }

  // REQUIRES: e is present.
  void Erase(Entry* e) {
    uint64_t& bucket = buckets_[HashKey(e->key()) & Mask()];
    if (Head(bucket) == e) {
      // The last entry of a chain takes its filter with it.
      bucket = e->next_hash == nullptr
                   ? 0
                   : reinterpret_cast<uint64_t>(e->next_hash) | (bucket & ~pointer_mask_);
    } else {
      Entry* prev = Head(bucket);
      while (prev->next_hash != e) prev = prev->next_hash;
      prev->next_hash = e->next_hash;
    }
    e->next_hash = nullptr;
    --size_;
  }

  size_t size() const { return size_; }
  size_t bucket_count() const { return buckets_.size(); }

  template <typename F>
  void ForEach(F f) const {
    for (uint64_t bucket : buckets_) {
      for (Entry* e = Head(bucket); e != nullptr;) {
        Entry* next = e->next_hash;  // f may free e
        f(e);
        e = next;
      }
    }
  }

  // What a pointer above 2^48 makes the table do; for tests.
  void StorePlainPointersForTesting() { StorePlainPointers(); }

 private:
  static constexpr size_t kInitialBuckets = 16;  // a power of two
  static constexpr size_t kMaxLoad = 3;
  static constexpr int kPointerBits = 48;

  size_t Mask() const { return buckets_.size() - 1; }
  Entry* Head(uint64_t bucket) const { return reinterpret_cast<Entry*>(bucket & pointer_mask_); }

  // The key's two filter bits: hash bits 48-55, which the shard (the top
  // bits) and the bucket (the low bits) do not use. None without a filter.
  uint64_t FilterBits(uint64_t hash) const {
    return ((uint64_t{1} << (kPointerBits + ((hash >> 48) & 15))) |
            (uint64_t{1} << (kPointerBits + ((hash >> 52) & 15)))) &
           ~pointer_mask_;
  }

  // Rebuilds the filter of a non-empty chain from its keys.
  void Refilter(uint64_t& bucket) {
    uint64_t filter = 0;
    for (Entry* e = Head(bucket); e != nullptr; e = e->next_hash) {
      filter |= FilterBits(HashKey(e->key()));
    }
    bucket = (bucket & pointer_mask_) | filter;
  }

  void StorePlainPointers() {
    for (uint64_t& bucket : buckets_) bucket &= pointer_mask_;
    pointer_mask_ = ~uint64_t{0};
  }

  void Grow() {
    std::vector<uint64_t> bigger(buckets_.size() * 2, 0);
    const size_t mask = bigger.size() - 1;
    ForEach([&](Entry* e) {
      const uint64_t hash = HashKey(e->key());
      uint64_t& bucket = bigger[hash & mask];
      e->next_hash = Head(bucket);
      bucket = reinterpret_cast<uint64_t>(e) | (bucket & ~pointer_mask_) | FilterBits(hash);
    });
    buckets_.swap(bigger);
  }

  std::vector<uint64_t> buckets_;  // see the top of the file
  uint64_t pointer_mask_ = (uint64_t{1} << kPointerBits) - 1;
  size_t size_ = 0;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_ENTRY_TABLE_H_
