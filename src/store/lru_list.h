// LruList: an intrusive, byte-counting recency list of entries.
//
// Head is the most recently used entry, tail the least. Links live in the
// entries themselves, so the list allocates nothing. The list also keeps a
// sweep cursor for incremental expiry reclaim: Sweep() walks from the tail
// towards the head a few entries at a time, and Unlink() moves the cursor
// off an entry before it leaves, so the walk survives any mix of operations.
//
// Not thread-safe: the owning shard's mutex guards it.

#ifndef LCACHE_SRC_STORE_LRU_LIST_H_
#define LCACHE_SRC_STORE_LRU_LIST_H_

#include <cstdint>

#include "store/entry.h"

namespace lcache::internal {

class LruList {
 public:
  // capacity_bytes == 0 means unbounded.
  explicit LruList(int64_t capacity_bytes = 0) : capacity_(capacity_bytes) {}

  void PushFront(Entry* e) {
    e->prev = nullptr;
    e->next = head_;
    if (head_ != nullptr) head_->prev = e;
    head_ = e;
    if (tail_ == nullptr) tail_ = e;
    bytes_ += e->charge();
    ++len_;
  }

  // REQUIRES: the list is not empty.
  void PushBehindHead(Entry* e) {
    e->prev = head_;
    e->next = head_->next;
    (head_->next != nullptr ? head_->next->prev : tail_) = e;
    head_->next = e;
    bytes_ += e->charge();
    ++len_;
  }

  void Unlink(Entry* e) {
    if (cursor_ == e) cursor_ = e->prev;
    (e->prev != nullptr ? e->prev->next : head_) = e->next;
    (e->next != nullptr ? e->next->prev : tail_) = e->prev;
    e->prev = e->next = nullptr;
    bytes_ -= e->charge();
    --len_;
  }

  void MoveToFront(Entry* e) {
    if (head_ == e) return;  // the common case for hot keys: no writes at all
    Unlink(e);
    PushFront(e);
  }

  // The tail to evict, CLOCK-style: a referenced tail (see Entry::kReferenced)
  // has its bit cleared and goes back behind the head instead, up to
  // kMaxSecondChances of them; then the tail goes whatever its bit. Behind
  // the head, not in front of it: the head is the entry whose arrival made
  // the list overflow, and as in CLOCK (where it takes the victim's slot,
  // the last the hand reaches) it must not become the oldest by being
  // passed.
  Entry* SecondChanceVictim() {
    for (int i = 0; i < kMaxSecondChances && tail_ != head_ && tail_->referenced(); ++i) {
      Entry* e = tail_;
      e->set_referenced(false);
      Unlink(e);
      PushBehindHead(e);
    }
    return tail_;
  }

  // The next entry for the expiry sweep, coldest first, wrapping around.
  Entry* SweepNext() {
    Entry* e = cursor_ != nullptr ? cursor_ : tail_;
    if (e != nullptr) cursor_ = e->prev;
    return e;
  }

  bool OverCapacity() const { return capacity_ > 0 && bytes_ > capacity_; }
  // Whether an entry of `charge` bytes could ever fit.
  bool Fits(int64_t charge) const { return capacity_ == 0 || charge <= capacity_; }

  // Bounds the work of one eviction when most entries were hit (a scan after
  // a hot spell): amortized, each rotation pays for the hit that set the bit.
  static constexpr int kMaxSecondChances = 32;

  Entry* head() const { return head_; }
  Entry* tail() const { return tail_; }
  int64_t bytes() const { return bytes_; }
  int64_t len() const { return len_; }
  int64_t capacity() const { return capacity_; }

 private:
  Entry* head_ = nullptr;
  Entry* tail_ = nullptr;
  Entry* cursor_ = nullptr;
  int64_t bytes_ = 0;
  int64_t len_ = 0;
  const int64_t capacity_;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_LRU_LIST_H_
