#include "store/epochs.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LCACHE_HAS_TSAN 1
#endif
#endif
#ifndef LCACHE_HAS_TSAN
#define LCACHE_HAS_TSAN 0
#endif

namespace lcache::internal {
namespace epochs_detail {
namespace {

std::atomic<Slot*> slots{nullptr};
std::atomic<size_t> slot_count{0};

// The free slot of lowest index, else a new one: counters striped by index
// (thread_counters.h) give only the lowest indices a stripe of their own,
// so after a burst of threads the survivors' successors must not inherit
// the high ones.
Slot* TakeSlot() {
  for (;;) {
    Slot* lowest = nullptr;
    for (Slot* s = slots.load(std::memory_order_acquire); s != nullptr; s = s->next) {
      if (!s->taken.load(std::memory_order_relaxed) &&
          (lowest == nullptr || s->index < lowest->index)) {
        lowest = s;
      }
    }
    if (lowest == nullptr) break;
    bool expected = false;
    if (lowest->taken.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      return lowest;
    }
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

constinit thread_local Slot* my_slot = nullptr;

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
#if defined(__SANITIZE_THREAD__) || LCACHE_HAS_TSAN
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

uint64_t Epochs::SafeBefore(uint64_t* cap) {
  uint64_t oldest = epochs_detail::AsymmetricFence()
                        ? fenced_.load(std::memory_order_seq_cst)  // scanned after that fence
                        : global_.fetch_add(1, std::memory_order_seq_cst) + 1;
  if (cap != nullptr) *cap = oldest;
  for (const epochs_detail::Slot* s = epochs_detail::slots.load(std::memory_order_acquire);
       s != nullptr; s = s->next) {
    const uint64_t e = s->epoch.load(std::memory_order_seq_cst);
    if (e != 0) oldest = std::min(oldest, e);
  }
  return oldest;
}

bool Epochs::Fence() {
  const uint64_t covered = global_.fetch_add(1, std::memory_order_seq_cst) + 1;
  // An object retired with an epoch below `covered` was unlinked before the
  // increment (its writer read the epoch after a sequentially consistent
  // unlink), so a reader's loads after this fence cannot reach it; and an
  // announcement made before the fence is visible to any scan after it.
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
    // Refused: perhaps a forked child on a kernel that does not carry the
    // registration over to the new address space (Linux 6.18 here does).
    // Register again and retry once; else nothing is covered this time.
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0 ||
        syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
      return false;
    }
  }
  uint64_t f = fenced_.load(std::memory_order_relaxed);
  while (f < covered && !fenced_.compare_exchange_weak(f, covered, std::memory_order_seq_cst,
                                                       std::memory_order_relaxed)) {
  }
  return true;
}

RetireList::~RetireList() {
  for (const Retired& r : retired_) r.free(r.object);
}

void RetireList::Retire(void* object, Free free, size_t bytes, bool may_reclaim) {
  const uint64_t epoch = Epochs::Current();
  std::vector<Retired> reclaimable;
  bool fence = false;
  {
    std::lock_guard lock(mu_);
    retired_.push_back({epoch, object, free, bytes});
    bytes_ += bytes;
    if (!may_reclaim) {
      reclaim_soon_ = true;  // a big object (a bucket array): at the next chance
      return;
    }
    if (!reclaim_soon_ && retired_.size() < next_reclaim_ && bytes_ < max_bytes_) return;
    fence = TakeReclaimable(&reclaimable);
  }
  // Outside the mutex: a shard's writer may wait for it (a bucket array is
  // retired under the shard's lock), and the fence is a system call.
  if (fence && Epochs::Fence()) {
    std::lock_guard lock(mu_);
    TakeSafe(Epochs::SafeBefore(), &reclaimable);
  }
  for (const Retired& r : reclaimable) r.free(r.object);
}

void RetireList::TakeSafe(uint64_t safe, std::vector<Retired>* out) {
  auto unsafe = std::partition(retired_.begin(), retired_.end(),
                               [safe](const Retired& r) { return r.epoch < safe; });
  out->insert(out->end(), retired_.begin(), unsafe);
  for (auto it = retired_.begin(); it != unsafe; ++it) bytes_ -= it->bytes;
  retired_.erase(retired_.begin(), unsafe);
  next_reclaim_ = std::max(kBatch, 2 * retired_.size());
}

bool RetireList::TakeReclaimable(std::vector<Retired>* out) {
  uint64_t cap;
  const uint64_t safe = Epochs::SafeBefore(&cap);
  TakeSafe(safe, out);
  const bool soon = std::exchange(reclaim_soon_, false);
  // A fence helps only if no reader holds back what it would cover (a
  // reader announced below the cap), and only for enough of it.
  return Epochs::Fenced() && safe == cap &&
         (soon || retired_.size() >= kFenceAt || bytes_ >= max_bytes_ / 2);
}

}  // namespace lcache::internal
