// Epochs: when memory that lock-free readers may still be reading can go.
//
// A store's hit path reads its table and entries without the shard's mutex
// (sharded_store.h), so an entry unlinked by a writer may still be under a
// reader's eyes; it is retired rather than released, and released once no
// reader that could have seen it is still reading. This is epoch-based
// reclamation (Fraser, "Practical lock-freedom", 2004), kept small:
//
//   - One global epoch, and one slot per thread (process-wide, reused after
//     the thread exits) where a reader announces the epoch it entered in;
//     0 means "not reading". Announcing is an exchange on the thread's own
//     cache line, so readers on different cores share no written line.
//   - A writer unlinks under its mutex, then retires the object with the
//     epoch current at that moment (Retired). Every reader that could have
//     reached the object announced that epoch or an earlier one before its
//     first load (all of these accesses are sequentially consistent, so a
//     reader either announced before the unlink, or cannot see the object).
//   - Reclaiming advances the epoch and frees what was retired before the
//     oldest epoch still announced.
//
// A reader must not block or call user code inside its ReadGuard: a reader
// that stalls holds back every retired object (memory, not correctness).
// std atomics only, so ThreadSanitizer sees every hand-off.

#ifndef LCACHE_SRC_STORE_EPOCHS_H_
#define LCACHE_SRC_STORE_EPOCHS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace lcache::internal {

class Epochs {
 public:
  // Announces this thread as a reader for its lifetime. Nests: an inner
  // guard leaves the outer one's (older) announcement in place.
  class ReadGuard {
   public:
    ReadGuard();
    ~ReadGuard();
    ReadGuard(const ReadGuard&) = delete;
    ReadGuard& operator=(const ReadGuard&) = delete;

   private:
    std::atomic<uint64_t>* slot_;
    bool outermost_;
  };

  // A number for this thread that no other live thread has, reused once the
  // thread exits: with N threads alive, at most about N. For striping
  // per-thread counters so that threads alive together do not share one.
  static size_t ThisThreadIndex();

  // The epoch to retire an object with, read after it was unlinked.
  static uint64_t Current() { return global_.load(std::memory_order_seq_cst); }

  // Advances the epoch and returns the oldest one a reader still announces
  // (the new epoch if none reads): objects retired before it are unreachable.
  static uint64_t SafeBefore();

 private:
  static std::atomic<uint64_t> global_;
};

// Retired objects, freed in batches once Epochs::SafeBefore says no reader
// can reach them. Thread-safe (writers only ever touch it). A batch is
// kBatch objects or `max_bytes` of them, whichever comes first, so that
// large values do not pile up: what waits is bounded in bytes, not only in
// count (unless a reader stalls, which holds back everything since).
class RetireList {
 public:
  using Free = void (*)(void*);

  explicit RetireList(size_t max_bytes = size_t{1} << 20) : max_bytes_(max_bytes) {}
  RetireList(const RetireList&) = delete;
  RetireList& operator=(const RetireList&) = delete;
  ~RetireList();  // frees everything: no reader may use the owner any more

  // `object` (of `bytes` bytes) was unlinked from every structure readers
  // can reach. With `may_reclaim` false it only waits (for a caller that
  // holds a lock under which nothing should be freed), and the next
  // retirement reclaims whatever the batch.
  void Retire(void* object, Free free, size_t bytes, bool may_reclaim = true);

  size_t pending() const {
    std::lock_guard lock(mu_);
    return retired_.size();
  }
  size_t pending_bytes() const {
    std::lock_guard lock(mu_);
    return bytes_;
  }

 private:
  struct Retired {
    uint64_t epoch;
    void* object;
    Free free;
    size_t bytes;
  };
  // Reclaiming scans every thread's slot, so it waits for a batch; and for
  // twice what a stalled reader left behind last time, so that one reader
  // paused mid-read does not make every retirement scan again.
  static constexpr size_t kBatch = 64;

  // Returns what is now safe to free, to be freed outside the mutex.
  std::vector<Retired> TakeReclaimable();

  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::vector<Retired> retired_;
  size_t bytes_ = 0;  // of retired_
  size_t next_reclaim_ = kBatch;
  bool reclaim_soon_ = false;  // something was retired without a reclaim
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_EPOCHS_H_
