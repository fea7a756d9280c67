#include "lcache/store.h"

#include <algorithm>

#include "store/lru2_store.h"
#include "store/lru_store.h"
#include "store/sharded_store.h"
#include "store/tinylfu_store.h"

namespace lcache {

void Store::ForEachByValue(int64_t max_bytes, const ValueVisitor& visit) {
  ForEachKeyByValue(max_bytes, [&](std::string_view key) {
    std::optional<ExpiringValue> v = Peek(key);
    return !v || visit(key, *v);  // else gone since the snapshot
  });
}

std::optional<StorePolicy> ParseStorePolicy(std::string_view name) {
  if (name == "lru") return StorePolicy::kLru;
  if (name == "lru2") return StorePolicy::kLru2;
  if (name == "tinylfu") return StorePolicy::kTinyLfu;
  return std::nullopt;
}

std::string_view StorePolicyName(StorePolicy policy) {
  switch (policy) {
    case StorePolicy::kLru:
      return "lru";
    case StorePolicy::kLru2:
      return "lru2";
    case StorePolicy::kTinyLfu:
      return "tinylfu";
  }
  return "unknown";
}

std::unique_ptr<Store> NewStore(const StoreOptions& options) {
  switch (options.policy) {
    case StorePolicy::kLru2:
      return internal::NewLru2Store(options);
    case StorePolicy::kTinyLfu:
      return internal::NewTinyLfuStore(options);
    case StorePolicy::kLru:
      break;
  }
  return internal::NewLruStore(options);
}

namespace internal {

int ShardCount(const StoreOptions& options) {
  constexpr int kMaxShards = 64;
  constexpr int64_t kMinShardBytes = int64_t{1} << 20;
  if (options.shards > 0) return options.shards;
  if (options.capacity_bytes == 0) return kMaxShards;
  return static_cast<int>(
      std::clamp<int64_t>(options.capacity_bytes / kMinShardBytes, 1, kMaxShards));
}

}  // namespace internal
}  // namespace lcache
