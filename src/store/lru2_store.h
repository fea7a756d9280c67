// The LRU-2 policy's store (see lru2_store.cc).

#ifndef LCACHE_SRC_STORE_LRU2_STORE_H_
#define LCACHE_SRC_STORE_LRU2_STORE_H_

#include <memory>

#include "lcache/store.h"

namespace lcache::internal {

std::unique_ptr<Store> NewLru2Store(const StoreOptions& options);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_LRU2_STORE_H_
