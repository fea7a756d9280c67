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
//     0 means "not reading". Announcing is a store on the thread's own
//     cache line, so readers on different cores share no written line; the
//     fence it needs is paid by the reclaimer where the kernel allows
//     (membarrier(2), see ReadGuard), else an exchange.
//   - A writer unlinks under its mutex (a sequentially consistent store),
//     then retires the object with the epoch current at that moment
//     (Retired). Every reader that could have reached the object announced
//     that epoch or an earlier one before its first load, so a reader
//     either announced before the unlink, or cannot see the object.
//   - Reclaiming frees what was retired before the oldest epoch still
//     announced. With exchanges, a reclaim advances the epoch itself; with
//     plain stores, only up to the last fence (Epochs::Fence), which one
//     reclaim pays for and every store's reclaims share.
//
// A reader must not block or call user code inside its ReadGuard: a reader
// that stalls holds back every retired object (memory, not correctness).
// ThreadSanitizer builds use the exchange: it models the C++ memory model,
// not membarrier, so there it checks every hand-off.

#ifndef LCACHE_SRC_STORE_EPOCHS_H_
#define LCACHE_SRC_STORE_EPOCHS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace lcache::internal {

namespace epochs_detail {

// One per thread that ever read; never freed, reused once its thread exits.
struct alignas(64) Slot {
  explicit Slot(size_t i) : index(i) {}
  std::atomic<uint64_t> epoch{0};  // 0: not reading
  std::atomic<bool> taken{true};
  const size_t index;    // 0, 1, 2, ... in order of creation
  Slot* next = nullptr;  // immutable once published
};

// This thread's slot, or null before its first use. Constant-initialized,
// so that reading it is one load with no initialization check: the hit path
// reads it inline (an out-of-line call cost a few ns on every hit).
extern constinit thread_local Slot* my_slot;

Slot* TakeSlotForThisThread();  // the first use on a thread

// Whether readers announce with a plain store, the reclaimer paying for the
// fence instead (membarrier(2), see ReadGuard); decided once per process.
bool RegisterAsymmetricFence();
inline bool AsymmetricFence() {
  static const bool on = RegisterAsymmetricFence();
  return on;
}

inline Slot* MySlot() {
  Slot* s = my_slot;
  if (s == nullptr) [[unlikely]]
    s = TakeSlotForThisThread();
  return s;
}

}  // namespace epochs_detail

class Epochs {
 public:
  // Announces this thread as a reader for its lifetime. Nests: an inner
  // guard leaves the outer one's (older) announcement in place.
  class ReadGuard {
   public:
    ReadGuard()
        : slot_(&epochs_detail::MySlot()->epoch),
          outermost_(slot_->load(std::memory_order_relaxed) == 0) {
      // The announcement must be visible before any load of the table this
      // reader makes (see above). An exchange orders it, at the cost of a
      // locked instruction on every hit; where the kernel has membarrier(2),
      // a plain store suffices, because the reclaimer (SafeBefore) makes
      // every running thread of the process execute a full fence before it
      // reads the slots: a store not visible by then is followed by loads
      // that see every unlink made before the reclaim (the asymmetric fence
      // of liburcu and folly). The compiler fence keeps the loads after it.
      if (outermost_) {
        const uint64_t e = global_.load(std::memory_order_seq_cst);
        if (epochs_detail::AsymmetricFence()) {
          slot_->store(e, std::memory_order_release);
          std::atomic_signal_fence(std::memory_order_seq_cst);
        } else {
          slot_->exchange(e, std::memory_order_seq_cst);
        }
      }
    }
    ~ReadGuard() {
      if (outermost_) slot_->store(0, std::memory_order_release);
    }
    ReadGuard(const ReadGuard&) = delete;
    ReadGuard& operator=(const ReadGuard&) = delete;

   private:
    std::atomic<uint64_t>* slot_;
    bool outermost_;
  };

  // A number for this thread that no other live thread has, reused once the
  // thread exits: with N threads alive, at most about N. For striping
  // per-thread counters so that threads alive together do not share one
  // (thread_counters.h).
  static size_t ThisThreadIndex() { return epochs_detail::MySlot()->index; }

  // The epoch to retire an object with, read after it was unlinked.
  static uint64_t Current() { return global_.load(std::memory_order_seq_cst); }

  // Objects retired before the returned epoch are unreachable: the oldest
  // epoch a reader still announces, capped (with plain-store announcements)
  // by the last fence. `*cap`, if given, receives that cap.
  static uint64_t SafeBefore(uint64_t* cap = nullptr);

  // With plain-store announcements: advances the epoch and makes every
  // running thread of the process execute a full fence (membarrier(2)), so
  // that SafeBefore covers everything retired before the call, in every
  // RetireList: one fence serves every shard, where each would otherwise
  // pay for one per batch (several µs on a virtual machine). False if the
  // kernel refused (it may, under memory pressure): nothing is covered then,
  // and a later fence covers it all.
  static bool Fence();

  // Whether reclaims must fence: readers announce with plain stores.
  static bool Fenced() { return epochs_detail::AsymmetricFence(); }

 private:
  static std::atomic<uint64_t> global_;
  static std::atomic<uint64_t> fenced_;  // epochs below it are fenced
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
  // A reclaim pays for a fence of its own only when at least this many
  // objects (or half of max_bytes) are left that no earlier fence covers,
  // or a bucket array is waiting (reclaim_soon_).
  static constexpr size_t kFenceAt = kBatch / 2;

  // Moves what is now safe to free into `out` (freed outside the mutex);
  // true if a fence would let more go.
  bool TakeReclaimable(std::vector<Retired>* out);
  void TakeSafe(uint64_t safe, std::vector<Retired>* out);

  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::vector<Retired> retired_;
  size_t bytes_ = 0;  // of retired_
  size_t next_reclaim_ = kBatch;
  bool reclaim_soon_ = false;  // something was retired without a reclaim
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_EPOCHS_H_
