// ByteView: an immutable, shared view of a value's bytes.
//
// A ByteView keeps the block that holds its bytes alive through an intrusive
// reference count, so copying one costs an atomic increment and never copies
// the bytes. A cache hit hands out a ByteView of the cache's own entry (or,
// for a small value that several threads read at once, a copy of it: see
// store.h): the value stays valid for as long as any ByteView refers to it,
// even after the cache has evicted or replaced the entry.
//
// Thread-safety: a ByteView may be copied and read from any thread; distinct
// ByteViews of one block may be destroyed concurrently.

#ifndef LCACHE_BYTE_VIEW_H_
#define LCACHE_BYTE_VIEW_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/time/time.h"

namespace lcache {

namespace internal {

// The header every shared block starts with. Blocks are either a bare byte
// buffer, a buffer of whole cache lines recycled per thread (see
// ByteView::CopyToOwnLines), a cache entry (see src/store/entry.h) or an
// adopted std::string.
struct SharedBlock {
  enum class Kind : uint8_t { kBuffer, kEntry, kString, kLines };

  explicit SharedBlock(Kind k) : kind(k) {}

  void Ref() const { refs.fetch_add(1, std::memory_order_relaxed); }
  // Drops one reference; frees the block when it was the last one. A count
  // of one cannot rise under its only holder (a new reference is taken
  // from an existing one, or, for a cache entry, while the store still holds
  // its own), so the only holder frees without a read-modify-write: a hit
  // that copies its value out pays no atomic add for it.
  void Unref() const {
    if (refs.load(std::memory_order_acquire) == 1 ||
        refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      Free();
    }
  }
  void Free() const;

  mutable std::atomic<uint32_t> refs{1};
  const Kind kind;
  // Spare header bytes for the block's owner: a cache entry keeps its flags
  // and key length here, so that its whole header fits in 32 bytes.
  uint8_t owner_flags = 0;
  uint16_t owner_u16 = 0;
};
static_assert(sizeof(SharedBlock) == 8);

}  // namespace internal

class ByteView {
 public:
  // An empty view.
  ByteView() = default;

  // Copies `bytes` into a new shared block.
  static ByteView Copy(std::string_view bytes);
  // Takes ownership of `s` without copying its bytes.
  static ByteView Adopt(std::string&& s);

  ByteView(const ByteView& other) : block_(other.block_), data_(other.data_), size_(other.size_) {
    if (block_ != nullptr) block_->Ref();
  }
  ByteView(ByteView&& other) noexcept
      : block_(std::exchange(other.block_, nullptr)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  ByteView& operator=(ByteView other) noexcept {
    swap(other);
    return *this;
  }
  ~ByteView() {
    if (block_ != nullptr) block_->Unref();
  }

  void swap(ByteView& other) noexcept {
    std::swap(block_, other.block_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
  }

  const char* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {data_, size_}; }
  std::string ToString() const { return std::string(data_, size_); }

  friend bool operator==(const ByteView& a, const ByteView& b) { return a.view() == b.view(); }
  friend bool operator==(const ByteView& a, std::string_view b) { return a.view() == b; }

  // For the store's hits that copy a small value out: like Copy, but into a
  // block of whole 64-byte cache lines that shares no line with any other
  // allocation, and that its thread keeps for the next copy of the same
  // size class when the view is dropped (one spare per class, up to 320
  // bytes; larger copies fall back to Copy). A malloc'd copy can share a
  // line with another thread's hot data in the same arena, and two threads
  // reading one hot key then slow each other down by false sharing.
  static ByteView CopyToOwnLines(std::string_view bytes);

  // For the store: a view of bytes inside `block`, taking one new reference.
  static ByteView Share(const internal::SharedBlock* block, const char* data, size_t size) {
    block->Ref();
    return ByteView(block, data, size);
  }

 private:
  ByteView(const internal::SharedBlock* block, const char* data, size_t size)
      : block_(block), data_(data), size_(size) {}

  const internal::SharedBlock* block_ = nullptr;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// A value and the time its cached copy expires: what a store holds, a load
// produces and an owner tells its peers.
struct ExpiringValue {
  ExpiringValue(ByteView v) : value(std::move(v)) {}  // NOLINT: never expires; implicit on purpose
  ExpiringValue(ByteView v, absl::Time expires) : value(std::move(v)), expire_at(expires) {}

  ByteView value;
  absl::Time expire_at = absl::InfiniteFuture();  // absl::InfiniteFuture(): never
};

}  // namespace lcache

#endif  // LCACHE_BYTE_VIEW_H_
