#include "store/epochs.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

namespace lcache::internal {
namespace epochs_detail {
namespace {

std::atomic<Slot*> slots{nullptr};
std::atomic<size_t> slot_count{0};

Slot* TakeSlot() {
  for (Slot* s = slots.load(std::memory_order_acquire); s != nullptr; s = s->next) {
    bool expected = false;
    if (s->taken.compare_exchange_strong(expected, true, std::memory_order_acquire)) return s;
  }
  auto* s = new Slot(slot_count.fetch_add(1, std::memory_order_relaxed));
  s->next = slots.load(std::memory_order_relaxed);
  while (!slots.compare_exchange_weak(s->next, s, std::memory_order_release,
                                      std::memory_order_relaxed)) {
  }
  return s;
}

thread_local bool slot_returned = false;

// Hands the thread's slot back when the thread exits. The release pairs
// with TakeSlot's acquire: the next owner sees what this thread wrote to
// whatever the slot's index stripes (thread_counters.h).
struct SlotReturner {
  ~SlotReturner() {
    my_slot->taken.store(false, std::memory_order_release);
    my_slot = nullptr;
    slot_returned = true;
  }
};

}  // namespace

thread_local Slot* my_slot = nullptr;

Slot* TakeSlotForThisThread() {
  my_slot = TakeSlot();
  if (!slot_returned) {
    thread_local SlotReturner returner;
  }
  // else: a thread_local destroyed after the returner reads a store; its
  // slot is never handed back (one slot per such thread, for good), so
  // that no other thread can share it.
  return my_slot;
}

bool RegisterAsymmetricFence() {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer models the C++ memory model, not membarrier: keep the
  // exchange there, so that what it checks is what the model guarantees.
  return false;
#else
  const long supported = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#endif
}

}  // namespace epochs_detail

std::atomic<uint64_t> Epochs::global_{1};
std::atomic<uint64_t> Epochs::fenced_{0};

uint64_t Epochs::SafeBefore(bool fence) {
  uint64_t oldest;
  if (!epochs_detail::AsymmetricFence()) {
    oldest = global_.fetch_add(1, std::memory_order_seq_cst) + 1;
  } else if (fence) {
    oldest = global_.fetch_add(1, std::memory_order_seq_cst) + 1;
    // Readers announced with plain stores (ReadGuard): fence them all. An
    // object retired with an epoch below `oldest` was unlinked before the
    // increment (its writer read the epoch after a sequentially consistent
    // unlink), so a reader's loads after this fence cannot reach it, and an
    // announcement made before it is visible to any scan after it. This
    // cannot fail once registered; if it ever did, nothing could be freed.
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) std::abort();
    uint64_t f = fenced_.load(std::memory_order_relaxed);
    while (f < oldest && !fenced_.compare_exchange_weak(f, oldest, std::memory_order_release,
                                                        std::memory_order_relaxed)) {
    }
  } else {
    oldest = fenced_.load(std::memory_order_acquire);  // the scan below comes after that fence
  }
  for (const epochs_detail::Slot* s = epochs_detail::slots.load(std::memory_order_acquire);
       s != nullptr; s = s->next) {
    const uint64_t e = s->epoch.load(std::memory_order_seq_cst);
    if (e != 0) oldest = std::min(oldest, e);
  }
  return oldest;
}

RetireList::~RetireList() {
  for (const Retired& r : retired_) r.free(r.object);
}

void RetireList::Retire(void* object, Free free, size_t bytes, bool may_reclaim) {
  const uint64_t epoch = Epochs::Current();
  std::vector<Retired> reclaimable;
  {
    std::lock_guard lock(mu_);
    retired_.push_back({epoch, object, free, bytes});
    bytes_ += bytes;
    if (!may_reclaim) {
      reclaim_soon_ = true;  // a big object (a bucket array): at the next chance
    } else if (reclaim_soon_ || retired_.size() >= next_reclaim_ || bytes_ >= max_bytes_) {
      reclaimable = TakeReclaimable();
    }
  }
  for (const Retired& r : reclaimable) r.free(r.object);
}

std::vector<RetireList::Retired> RetireList::TakeReclaimable() {
  auto take_safe = [this](uint64_t safe, std::vector<Retired>* out) {
    auto unsafe = std::partition(retired_.begin(), retired_.end(),
                                 [safe](const Retired& r) { return r.epoch < safe; });
    out->insert(out->end(), retired_.begin(), unsafe);
    for (auto it = retired_.begin(); it != unsafe; ++it) bytes_ -= it->bytes;
    retired_.erase(retired_.begin(), unsafe);
  };
  std::vector<Retired> out;
  take_safe(Epochs::SafeBefore(/*fence=*/false), &out);
  if (Epochs::FencesAreShared() &&
      (reclaim_soon_ || retired_.size() >= kFenceAt || bytes_ >= max_bytes_ / 2)) {
    take_safe(Epochs::SafeBefore(/*fence=*/true), &out);
  }
  next_reclaim_ = std::max(kBatch, 2 * retired_.size());
  reclaim_soon_ = false;
  return out;
}

}  // namespace lcache::internal
