// LRU-2, as in the Go lcache: a key seen once lives in a history list
// that gets a fraction (default a quarter) of the shard's bytes; a second
// access, a Get hit or a Set of a key already present, promotes it into the
// main list with the rest. One-off keys (scans) thus churn only the history
// and cannot flush the keys that earned their place in main. A hit in the
// history counts as a hit. Entries evicted from main leave the store. The
// main list is a CLOCK (see lru_store.cc): a hit there sets a bit rather than
// moving the entry.

#include "store/lru2_store.h"

#include <cmath>

#include "store/sharded_store.h"

namespace lcache::internal {
namespace {

class Lru2Policy {
 public:
  Lru2Policy(int64_t capacity, const StoreOptions& options)
      : history_(HistoryCapacity(capacity, options.lru2_history_fraction)),
        main_(capacity - history_.capacity()) {}

  static constexpr bool kMarksHits = true;

  LruList& QueueOf(const Entry* e) { return e->in_main() ? main_ : history_; }

  LruList* Admit(Entry* e, const Entry* old) {
    // Adding a key that is already present is its second access.
    const bool to_main = old != nullptr && main_.Fits(e->charge());
    e->set_in_main(to_main);
    LruList& q = to_main ? main_ : history_;
    return q.Fits(e->charge()) ? &q : nullptr;
  }

  // A new key enters the history list.
  int64_t MaxCharge() const { return history_.capacity() == 0 ? kNoLimit : history_.capacity(); }

  // A hit in main only marks the entry; one in history moves it (locked).
  bool MarkHitWithoutLock(Entry* e) {
    if (!e->in_main()) return false;
    if (!e->referenced()) e->set_referenced(true);
    return true;
  }

  LruList* Touch(Entry* e) {
    if (e->in_main()) {
      if (!e->referenced()) e->set_referenced(true);  // CLOCK, as in lru_store.cc
      return nullptr;
    }
    if (!main_.Fits(e->charge())) {
      history_.MoveToFront(e);
      return nullptr;
    }
    history_.Unlink(e);
    e->set_in_main(true);
    main_.PushFront(e);
    return &main_;
  }

  // Only the list that just grew can be over capacity.
  Entry* NextVictim() {
    if (main_.OverCapacity()) return main_.SecondChanceVictim();
    return history_.OverCapacity() ? history_.tail() : nullptr;
  }

  template <typename F>
  void ForEachQueue(F f) {
    f(history_);
    f(main_);
  }

 private:
  // An unbounded store has unbounded lists; otherwise each list gets at
  // least a byte so that "0 = unbounded" never applies by accident.
  static int64_t HistoryCapacity(int64_t capacity, double fraction) {
    if (capacity == 0) return 0;
    const auto h = static_cast<int64_t>(std::llround(static_cast<double>(capacity) * fraction));
    return std::clamp<int64_t>(h, 1, capacity - 1);
  }

  LruList history_;
  LruList main_;
};

}  // namespace

std::unique_ptr<Store> NewLru2Store(const StoreOptions& options) {
  return std::make_unique<ShardedStore<Lru2Policy>>(options);
}

}  // namespace lcache::internal
