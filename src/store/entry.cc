#include "store/entry.h"

#include <cstddef>
#include <cstdlib>
#include <new>

namespace lcache::internal {
namespace {

// glibc's chunk for a request of n bytes: n plus an 8-byte size field,
// rounded up to 16, at least 32.
int64_t MallocChunkSize(size_t n) {
  const size_t chunk = (n + 8 + 15) & ~size_t{15};
  return static_cast<int64_t>(chunk < 32 ? 32 : chunk);
}

size_t AllocationSize(size_t key_size, size_t value_size, bool has_expiry) {
  const size_t n = Entry::kHeaderSize + (has_expiry ? sizeof(int64_t) : 0) + key_size + value_size;
  // The struct itself must fit, even when the payload is shorter than its padding.
  return n < sizeof(Entry) ? sizeof(Entry) : n;
}

}  // namespace

Entry* Entry::New(std::string_view key, std::string_view value, int64_t expire_unix_nanos,
                  bool has_expiry) {
  if (key.size() > kMaxKeySize) return nullptr;
  void* mem = std::malloc(AllocationSize(key.size(), value.size(), has_expiry));
  if (mem == nullptr) throw std::bad_alloc();
  static_assert(offsetof(Entry, value_size) + sizeof(Entry::value_size) == Entry::kHeaderSize);
  auto* e = new (mem) Entry;
  e->block.owner_flags = has_expiry ? kHasExpiry : 0;
  e->block.owner_u16 = static_cast<uint16_t>(key.size());
  e->value_size = static_cast<uint32_t>(value.size());
  char* p = e->payload();
  if (has_expiry) {
    std::memcpy(p, &expire_unix_nanos, sizeof(expire_unix_nanos));
    p += sizeof(expire_unix_nanos);
  }
  // Empty keys/values may come with a null data pointer; memcpy wants none.
  if (!key.empty()) std::memcpy(p, key.data(), key.size());
  if (!value.empty()) std::memcpy(p + key.size(), value.data(), value.size());
  return e;
}

int64_t Entry::overhead() const {
  return MallocChunkSize(AllocationSize(key_size(), value_size, has_expiry())) - charge();
}

}  // namespace lcache::internal
