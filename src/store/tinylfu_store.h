// The TinyLFU policy's store (see tinylfu_store.cc).

#ifndef LCACHE_SRC_STORE_TINYLFU_STORE_H_
#define LCACHE_SRC_STORE_TINYLFU_STORE_H_

#include <memory>

#include "lcache/store.h"

namespace lcache::internal {

std::unique_ptr<Store> NewTinyLfuStore(const StoreOptions& options);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_TINYLFU_STORE_H_
