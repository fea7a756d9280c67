#include "store/epochs.h"

#include <algorithm>
#include <utility>

namespace lcache::internal {
namespace {

// One per thread that ever read; never freed, reused once its thread exits.
struct alignas(64) Slot {
  explicit Slot(size_t i) : index(i) {}
  std::atomic<uint64_t> epoch{0};  // 0: not reading
  std::atomic<bool> taken{true};
  const size_t index;    // 0, 1, 2, ... in order of creation
  Slot* next = nullptr;  // immutable once published
};

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

// Trivially initialized thread_locals: reading them needs no guard check.
thread_local Slot* my_slot = nullptr;
thread_local bool slot_returned = false;

// Hands the thread's slot back when the thread exits.
struct SlotReturner {
  ~SlotReturner() {
    my_slot->taken.store(false, std::memory_order_release);
    my_slot = nullptr;
    slot_returned = true;
  }
};

Slot* MySlot() {
  if (my_slot == nullptr) [[unlikely]] {
    my_slot = TakeSlot();
    if (!slot_returned) {
      thread_local SlotReturner returner;
    }
    // else: a thread_local destroyed after the returner reads a store; its
    // slot is never handed back (one slot per such thread, for good), so
    // that no other thread can share it.
  }
  return my_slot;
}

}  // namespace

std::atomic<uint64_t> Epochs::global_{1};

size_t Epochs::ThisThreadIndex() { return MySlot()->index; }

Epochs::ReadGuard::ReadGuard()
    : slot_(&MySlot()->epoch), outermost_(slot_->load(std::memory_order_relaxed) == 0) {
  // Sequentially consistent: the announcement precedes, in the single total
  // order, every load of the table this reader makes (see the header).
  if (outermost_) {
    slot_->exchange(global_.load(std::memory_order_seq_cst), std::memory_order_seq_cst);
  }
}

Epochs::ReadGuard::~ReadGuard() {
  if (outermost_) slot_->store(0, std::memory_order_release);
}

uint64_t Epochs::SafeBefore() {
  uint64_t oldest = global_.fetch_add(1, std::memory_order_seq_cst) + 1;
  for (Slot* s = slots.load(std::memory_order_acquire); s != nullptr; s = s->next) {
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
  const uint64_t safe = Epochs::SafeBefore();
  std::vector<Retired> out;
  auto unsafe = std::partition(retired_.begin(), retired_.end(),
                               [safe](const Retired& r) { return r.epoch < safe; });
  out.assign(retired_.begin(), unsafe);
  retired_.erase(retired_.begin(), unsafe);
  for (const Retired& r : out) bytes_ -= r.bytes;
  next_reclaim_ = std::max(kBatch, 2 * retired_.size());
  reclaim_soon_ = false;
  return out;
}

}  // namespace lcache::internal
