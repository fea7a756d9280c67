// LRU, as CLOCK: one list per shard in insertion order; a hit only sets the
// entry's referenced bit (a write only the first time), and eviction from the
// tail gives a referenced entry a second chance at the head instead. A hit
// thus writes no list neighbour's memory: on a large store the two or three
// cache misses of a list move were most of a hit's cost, and on hot keys the
// writes bounced the shared lines between cores. CLOCK's hit ratios are
// LRU's within a few tenths of a point (docs/EVICTION.md).

#include "store/lru_store.h"

#include "store/sharded_store.h"

namespace lcache::internal {
namespace {

class LruPolicy {
 public:
  LruPolicy(int64_t capacity, const StoreOptions&) : queue_(capacity) {}

  static constexpr bool kMarksHits = true;

  LruList& QueueOf(const Entry*) { return queue_; }
  LruList* Admit(Entry* e, const Entry*) { return queue_.Fits(e->charge()) ? &queue_ : nullptr; }
  int64_t MaxCharge() const { return queue_.capacity() == 0 ? kNoLimit : queue_.capacity(); }
  bool MarkHitWithoutLock(Entry* e) {
    if (!e->referenced()) e->set_referenced(true);
    return true;
  }

  LruList* Touch(Entry* e) {
    if (!e->referenced()) e->set_referenced(true);
    return nullptr;
  }
  Entry* NextVictim() { return queue_.OverCapacity() ? queue_.SecondChanceVictim() : nullptr; }
  template <typename F>
  void ForEachQueue(F f) {
    f(queue_);
  }

 private:
  LruList queue_;
};

}  // namespace

std::unique_ptr<Store> NewLruStore(const StoreOptions& options) {
  return std::make_unique<ShardedStore<LruPolicy>>(options);
}

}  // namespace lcache::internal
