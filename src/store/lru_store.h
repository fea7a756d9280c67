// The LRU policy's store (see lru_store.cc).

#ifndef LCACHE_SRC_STORE_LRU_STORE_H_
#define LCACHE_SRC_STORE_LRU_STORE_H_

#include <memory>

#include "lcache/store.h"

namespace lcache::internal {

std::unique_ptr<Store> NewLruStore(const StoreOptions& options);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_LRU_STORE_H_
