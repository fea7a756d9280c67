// LRU: one recency list per shard; a hit moves the entry to the front and
// the shard evicts from the back when its bytes exceed its capacity.

#include "store/lru_store.h"

#include "store/sharded_store.h"

namespace lcache::internal {
namespace {

class LruPolicy {
 public:
  LruPolicy(int64_t capacity, const StoreOptions&) : queue_(capacity) {}

  LruList& QueueOf(const Entry*) { return queue_; }
  LruList* Admit(Entry* e, const Entry*) { return queue_.Fits(e->charge()) ? &queue_ : nullptr; }
  int64_t MaxCharge() const { return queue_.capacity() == 0 ? kNoLimit : queue_.capacity(); }
  LruList* Touch(Entry* e) {
    queue_.MoveToFront(e);
    return nullptr;
  }
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
