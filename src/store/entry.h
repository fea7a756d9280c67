// Entry: one cache entry in one allocation, like leveldb's LRUHandle.
//
//   [ 36-byte header | expiry (8 bytes, only if it has one) | key | value ]
//
// The header starts with the SharedBlock that ByteView counts references on,
// so a hit hands out a view of the value bytes inside the entry and an evicted
// entry lives on until its last view is gone. The store holds one reference
// while the entry is linked in; the last Unref happens outside the shard lock.
//
// The header holds the recency links, the hash chain link (see
// entry_table.h) and the value length; the key length and flags ride in the
// SharedBlock's spare bytes. The payload starts right after value_size, in
// what would be the struct's tail padding: with 16-byte keys and 100-byte
// values an entry is then 152 bytes, exactly a 160-byte glibc chunk, where a
// 40-byte header would cost a 176-byte one.

#ifndef LCACHE_SRC_STORE_ENTRY_H_
#define LCACHE_SRC_STORE_ENTRY_H_

#include <cstdint>
#include <cstring>
#include <string_view>

#include "lcache/byte_view.h"
#include "lcache/store.h"

namespace lcache::internal {

struct Entry {
  enum Flag : uint8_t {
    kHasExpiry = 1 << 0,   // 8 bytes of expiry (unix nanos) follow the header
    kInMain = 1 << 1,      // LRU-2: in the main queue rather than the history;
                           // TinyLFU: in the main region rather than the window
    kProtected = 1 << 2,   // TinyLFU: in the main region's protected segment
    kReferenced = 1 << 3,  // LRU, LRU-2: hit since it last reached the list's tail
    kCopyOnHit = 1 << 4,   // lock-free hits copy the value (sharded_store.h)
    kContended = 1 << 5,   // a hit found its value held elsewhere (sharded_store.h)
  };

  static constexpr size_t kMaxKeySize = kMaxStoreKeyBytes;
  static_assert(kMaxKeySize <= UINT16_MAX);

  // Allocates an entry with one reference, owned by the caller. Returns null
  // for a key longer than kMaxKeySize.
  // REQUIRES: value.size() < 4 GiB.
  static Entry* New(std::string_view key, std::string_view value, int64_t expire_unix_nanos,
                    bool has_expiry);

  // Bytes before the payload (sizeof(Entry) rounds up to 40).
  static constexpr size_t kHeaderSize = 36;

  void Ref() const { block.Ref(); }
  void Unref() const { block.Unref(); }

  // The flags byte is read without the shard's mutex by lock-free hits
  // (sharded_store.h), which also set kReferenced; so every access is
  // atomic, and every change a read-modify-write that keeps the other bits.
  bool has_expiry() const { return (flags() & kHasExpiry) != 0; }
  bool in_main() const { return (flags() & kInMain) != 0; }
  void set_in_main(bool v) { SetFlag(kInMain, v); }
  bool is_protected() const { return (flags() & kProtected) != 0; }
  void set_protected(bool v) { SetFlag(kProtected, v); }
  bool referenced() const { return (flags() & kReferenced) != 0; }
  void set_referenced(bool v) { SetFlag(kReferenced, v); }
  bool copy_on_hit() const { return (flags() & kCopyOnHit) != 0; }
  void set_copy_on_hit() { SetFlag(kCopyOnHit, true); }
  bool contended() const { return (flags() & kContended) != 0; }
  void set_contended() { SetFlag(kContended, true); }

  int64_t expire_unix_nanos() const {
    int64_t t;
    std::memcpy(&t, payload(), sizeof(t));
    return t;
  }
  bool ExpiredAt(int64_t now_unix_nanos) const {
    return has_expiry() && expire_unix_nanos() <= now_unix_nanos;
  }

  size_t key_size() const { return block.owner_u16; }
  std::string_view key() const { return {key_data(), key_size()}; }
  std::string_view value() const { return {key_data() + key_size(), value_size}; }
  ByteView ShareValue() const {
    return ByteView::Share(&block, key_data() + key_size(), value_size);
  }

  // What the capacity counts, as in the Go lru_cache.
  int64_t charge() const { return static_cast<int64_t>(key_size() + value_size); }
  // Bytes this entry costs beyond its charge, with glibc's chunk rounding.
  int64_t overhead() const;

  SharedBlock block{SharedBlock::Kind::kEntry};  // flags and key size ride in its spare bytes
  Entry* prev = nullptr;                         // towards the most recently used
  Entry* next = nullptr;                         // towards the least recently used
  Entry* next_hash = nullptr;                    // the next entry in its hash bucket
  uint32_t value_size = 0;
  // The payload follows value_size directly.

 private:
  const char* payload() const { return reinterpret_cast<const char*>(this) + kHeaderSize; }
  char* payload() { return reinterpret_cast<char*>(this) + kHeaderSize; }
  const char* key_data() const { return payload() + (has_expiry() ? sizeof(int64_t) : 0); }
  // The GCC builtins that std::atomic_ref wraps: GCC 12's atomic_ref<uint8_t>
  // load trips a false -Wstringop-overflow when it cannot prove `this` non-null.
  uint8_t flags() const { return __atomic_load_n(&block.owner_flags, __ATOMIC_RELAXED); }
  void SetFlag(Flag f, bool v) {
    if (v) {
      __atomic_fetch_or(&block.owner_flags, f, __ATOMIC_RELAXED);
    } else {
      __atomic_fetch_and(&block.owner_flags, static_cast<uint8_t>(~f), __ATOMIC_RELAXED);
    }
  }
};

static_assert(sizeof(Entry) == 40 && alignof(Entry) == 8);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_ENTRY_H_
