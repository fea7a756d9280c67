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
// Thread safety: the owning shard's mutex guards every call but
// FindWithoutLock, which a reader may make with only an Epochs::ReadGuard
// (every word and link is an atomic; unlinks and links are sequentially
// consistent stores, which the reclamation argument needs: see epochs.h).

#ifndef LCACHE_SRC_STORE_ENTRY_TABLE_H_
#define LCACHE_SRC_STORE_ENTRY_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "store/entry.h"
#include "store/epochs.h"

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
  // With `retired`, replaced bucket arrays go there rather than being freed
  // at once: lock-free readers (FindWithoutLock) may still be in them.
  explicit EntryTable(RetireList* retired = nullptr)
      : buckets_(NewBuckets(kInitialBuckets)), retired_(retired) {}
  ~EntryTable() { delete buckets_.load(std::memory_order_relaxed); }
  EntryTable(const EntryTable&) = delete;
  EntryTable& operator=(const EntryTable&) = delete;

  // Whether Find must walk a chain for a key of this hash: false means the
  // bucket's filter rules the key out.
  bool MayHold(uint64_t hash) const {
    const uint64_t bits = FilterBits(hash);
    return (Bucket(Locked(), hash).load(std::memory_order_relaxed) & bits) == bits;
  }

  Entry* Find(std::string_view key, uint64_t hash) {
    std::atomic<uint64_t>& bucket = Bucket(Locked(), hash);
    const uint64_t word = bucket.load(std::memory_order_relaxed);
    const uint64_t bits = FilterBits(hash);
    if ((word & bits) != bits) return nullptr;  // the filter rules the key out
    for (Entry* e = Head(word); e != nullptr; e = Next(e, std::memory_order_relaxed)) {
      if (e->key() == key) return e;
    }
    if (bits != 0 && word != 0) Refilter(bucket);
    return nullptr;
  }

  // Find for a reader that holds no lock, only an Epochs::ReadGuard (so
  // nothing it reaches is freed under it). Writers may be relinking the
  // chains (a growth, an erase): the walk always ends, but may miss a key
  // that is there, so a null answer must be confirmed under the lock,
  // unless it sets *absent: the bucket's filter ruled the key out, which
  // no relinking can make wrong (below). Sequentially consistent loads: see
  // epochs.h.
  //
  // Why a filter's "no" needs no lock: a key's bits are set in its bucket's
  // word (of the array current when it is inserted, or of the array a
  // growth builds, before that array is published) and leave it only by a
  // Refilter under the lock, which keeps the bits of every key on the
  // chain. An erase leaves them, so a key whose Set is replacing its entry
  // keeps them throughout, though its chain may be empty for a moment. A
  // growth leaves the old array's words as they were. So a word read
  // without the key's bits means the key was absent at some moment of this
  // read (linearizable as a miss), whichever array the reader holds.
  Entry* FindWithoutLock(std::string_view key, uint64_t hash, bool* absent) const {
    *absent = false;
    const Buckets* b = buckets_.load(std::memory_order_seq_cst);
    const uint64_t word = Bucket(*b, hash).load(std::memory_order_seq_cst);
    // Read after the word: a plain pointer above 2^48 is stored only after
    // this flag was cleared, so a word read before it holds a 48-bit one.
    if (!packed_.load(std::memory_order_seq_cst)) return nullptr;
    const uint64_t bits = PackedFilterBits(hash);
    if ((word & bits) != bits) {
      *absent = true;
      return nullptr;
    }
    for (Entry* e = reinterpret_cast<Entry*>(word & kPackedMask); e != nullptr;
         e = Next(e, std::memory_order_seq_cst)) {
      if (e->key() == key) return e;
    }
    return nullptr;
  }

  // REQUIRES: no entry with e's key is present; `hash` is HashKey(e->key()).
  void Insert(Entry* e, uint64_t hash) {
    if ((reinterpret_cast<uint64_t>(e) & ~pointer_mask_) != 0) StorePlainPointers();
    std::atomic<uint64_t>& bucket = Bucket(Locked(), hash);
    const uint64_t word = bucket.load(std::memory_order_relaxed);
    SetNext(e, Head(word));
    // Publishes e: its fields were written before this store.
    bucket.store(reinterpret_cast<uint64_t>(e) | (word & ~pointer_mask_) | FilterBits(hash),
                 std::memory_order_seq_cst);
    if (++size_ > (Locked().mask + 1) * kMaxLoad) Grow();
  }

  // REQUIRES: e is present. Its memory must outlive lock-free readers.
  void Erase(Entry* e) {
    std::atomic<uint64_t>& bucket = Bucket(Locked(), HashKey(e->key()));
    const uint64_t word = bucket.load(std::memory_order_relaxed);
    Entry* next = Next(e, std::memory_order_relaxed);
    if (Head(word) == e) {
      // The filter stays, even when the chain empties: a Set that replaces
      // the key erases its old entry before it inserts the new one, and a
      // lock-free reader in between must not be told the key is absent
      // (FindWithoutLock). The next walk in vain under the lock clears it.
      bucket.store(reinterpret_cast<uint64_t>(next) | (word & ~pointer_mask_),
                   std::memory_order_seq_cst);
    } else {
      Entry* prev = Head(word);
      while (Next(prev, std::memory_order_relaxed) != e)
        prev = Next(prev, std::memory_order_relaxed);
      SetNext(prev, next);
    }
    --size_;
  }

  size_t size() const { return size_; }
  size_t bucket_count() const { return Locked().mask + 1; }

  template <typename F>
  void ForEach(F f) const {
    const Buckets& b = Locked();
    for (size_t i = 0; i <= b.mask; ++i) {
      for (Entry* e = Head(b.words[i].load(std::memory_order_relaxed)); e != nullptr;) {
        Entry* next = Next(e, std::memory_order_relaxed);  // f may free e
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

  // One allocation, so that a lock-free reader loads the array and its size
  // together.
  struct Buckets {
    size_t mask;
    std::unique_ptr<std::atomic<uint64_t>[]> words;
  };

  static Buckets* NewBuckets(size_t n) {
    auto* b = new Buckets{n - 1, std::make_unique<std::atomic<uint64_t>[]>(n)};
    for (size_t i = 0; i < n; ++i) b->words[i].store(0, std::memory_order_relaxed);
    return b;
  }
  // The array, for a caller that holds the owner's lock (the only writer).
  const Buckets& Locked() const { return *buckets_.load(std::memory_order_relaxed); }
  static std::atomic<uint64_t>& Bucket(const Buckets& b, uint64_t hash) {
    return b.words[hash & b.mask];
  }

  // Chain links are read by lock-free readers too: always atomic.
  static Entry* Next(const Entry* e, std::memory_order order) {
    return std::atomic_ref<Entry*>(const_cast<Entry*&>(e->next_hash)).load(order);
  }
  static void SetNext(Entry* e, Entry* next) {
    std::atomic_ref<Entry*>(e->next_hash).store(next, std::memory_order_seq_cst);
  }

  Entry* Head(uint64_t word) const { return reinterpret_cast<Entry*>(word & pointer_mask_); }

  // The key's two filter bits: hash bits 48-55, which the shard (the top
  // bits) and the bucket (the low bits) do not use. None without a filter.
  static uint64_t PackedFilterBits(uint64_t hash) {
    return (uint64_t{1} << (kPointerBits + ((hash >> 48) & 15))) |
           (uint64_t{1} << (kPointerBits + ((hash >> 52) & 15)));
  }
  uint64_t FilterBits(uint64_t hash) const { return PackedFilterBits(hash) & ~pointer_mask_; }

  // Rebuilds the filter of a non-empty chain from its keys.
  void Refilter(std::atomic<uint64_t>& bucket) {
    const uint64_t word = bucket.load(std::memory_order_relaxed);
    uint64_t filter = 0;
    for (Entry* e = Head(word); e != nullptr; e = Next(e, std::memory_order_relaxed)) {
      filter |= FilterBits(HashKey(e->key()));
    }
    // Release: a lock-free reader that reads this word must also see the
    // entries it links to (a relaxed store would not carry the inserts'
    // release on to it).
    bucket.store((word & pointer_mask_) | filter, std::memory_order_release);
  }

  void StorePlainPointers() {
    packed_.store(false, std::memory_order_seq_cst);  // first: see FindWithoutLock
    const Buckets& b = Locked();
    // Release: a reader that reads a word without its bits must then read
    // the flag cleared (it would take the missing bits for a "no").
    for (size_t i = 0; i <= b.mask; ++i) {
      b.words[i].store(b.words[i].load(std::memory_order_relaxed) & pointer_mask_,
                       std::memory_order_release);
    }
    pointer_mask_ = ~uint64_t{0};
  }

  // Relinks every entry into an array twice the size. A lock-free reader in
  // the old array may follow a link into a new chain: links only ever point
  // to an entry not yet moved (old chains) or moved earlier (new chains),
  // so its walk still ends.
  void Grow() {
    Buckets* old = buckets_.load(std::memory_order_relaxed);
    Buckets* bigger = NewBuckets(2 * (old->mask + 1));
    ForEach([&](Entry* e) {
      const uint64_t hash = HashKey(e->key());
      std::atomic<uint64_t>& bucket = Bucket(*bigger, hash);
      const uint64_t word = bucket.load(std::memory_order_relaxed);
      SetNext(e, Head(word));
      bucket.store(reinterpret_cast<uint64_t>(e) | (word & ~pointer_mask_) | FilterBits(hash),
                   std::memory_order_relaxed);
    });
    buckets_.store(bigger, std::memory_order_seq_cst);
    if (retired_ != nullptr) {
      // Under the shard's mutex: wait for the next reclaim, free nothing here.
      retired_->Retire(
          old, [](void* p) { delete static_cast<Buckets*>(p); }, (old->mask + 1) * sizeof(uint64_t),
          /*may_reclaim=*/false);
    } else {
      delete old;
    }
  }

  std::atomic<Buckets*> buckets_;  // see the top of the file
  RetireList* const retired_;
  static constexpr uint64_t kPackedMask = (uint64_t{1} << kPointerBits) - 1;
  uint64_t pointer_mask_ = kPackedMask;  // ~0 once plain; writers' copy
  std::atomic<bool> packed_{true};       // readers' copy
  size_t size_ = 0;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_ENTRY_TABLE_H_
