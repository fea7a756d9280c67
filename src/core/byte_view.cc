#include "lcache/byte_view.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include <sanitizer/asan_interface.h>  // no-op macros unless built with ASan

namespace lcache {
namespace internal {
namespace {

// A byte buffer: the header, then the bytes.
struct Buffer {
  SharedBlock header{SharedBlock::Kind::kBuffer};
  char* bytes() { return reinterpret_cast<char*>(this + 1); }
};

// An adopted string, kept whole so that no byte is copied.
struct StringHolder {
  SharedBlock header{SharedBlock::Kind::kString};
  std::string value;
};

// Blocks of whole cache lines, in kLineClasses size classes (class c is
// c + 1 lines); the class is kept in the header's owner_u16.
constexpr size_t kLineBytes = 64;
constexpr int kLineClasses = 5;

struct LineBuffer {
  SharedBlock header{SharedBlock::Kind::kLines};
  char* bytes() { return reinterpret_cast<char*>(this + 1); }
};

size_t LineBytesOf(uint16_t line_class) {
  return (line_class + size_t{1}) * kLineBytes - sizeof(LineBuffer);
}

// Each thread's spare block per class. Plain thread-locals (no destructor,
// no guard on access); the Releaser below frees them when the thread exits.
// (A spare first kept by the main thread during static destruction, after
// its thread-locals were destroyed, is left to the exiting process.) Under
// ASan a spare's bytes are poisoned until reused, so a read through a stale
// pointer into a dropped copy is still reported.
constinit thread_local SharedBlock* t_spare[kLineClasses] = {};
enum class SpareState : uint8_t { kUnregistered, kRegistered, kReleased };
constinit thread_local SpareState t_spare_state = SpareState::kUnregistered;

struct SpareReleaser {
  ~SpareReleaser() {
    // Blocks dropped later in this thread's exit (by other thread-locals'
    // destructors) are freed at once instead of kept.
    t_spare_state = SpareState::kReleased;
    for (SharedBlock*& block : t_spare) {
      if (block == nullptr) continue;
      ASAN_UNPOISON_MEMORY_REGION(reinterpret_cast<LineBuffer*>(block)->bytes(),
                                  LineBytesOf(block->owner_u16));
      std::free(std::exchange(block, nullptr));
    }
  }
};

// Keeps `block` as its thread's spare if that thread has none of its class.
bool KeepAsSpare(const SharedBlock* block) {
  if (t_spare_state == SpareState::kReleased) return false;
  SharedBlock*& spare = t_spare[block->owner_u16];
  if (spare != nullptr) return false;
  if (t_spare_state == SpareState::kUnregistered) {
    // The first spare a thread keeps registers the release at its exit.
    static thread_local SpareReleaser releaser;
    static_cast<void>(releaser);
    t_spare_state = SpareState::kRegistered;
  }
  block->refs.store(1, std::memory_order_relaxed);
  spare = const_cast<SharedBlock*>(block);
  ASAN_POISON_MEMORY_REGION(reinterpret_cast<LineBuffer*>(spare)->bytes(),
                            LineBytesOf(spare->owner_u16));
  return true;
}

}  // namespace

void SharedBlock::Free() const {
  switch (kind) {
    case Kind::kString:
      delete reinterpret_cast<const StringHolder*>(this);
      return;
    case Kind::kLines:
      if (KeepAsSpare(this)) return;
      [[fallthrough]];
    case Kind::kBuffer:
    case Kind::kEntry:
      // All are trivially destructible blobs from std::malloc or
      // std::aligned_alloc.
      std::free(const_cast<SharedBlock*>(this));
      return;
  }
}

}  // namespace internal

ByteView ByteView::Copy(std::string_view bytes) {
  if (bytes.empty()) return ByteView();
  void* mem = std::malloc(sizeof(internal::Buffer) + bytes.size());
  if (mem == nullptr) throw std::bad_alloc();
  auto* buffer = new (mem) internal::Buffer;
  std::memcpy(buffer->bytes(), bytes.data(), bytes.size());
  return ByteView(&buffer->header, buffer->bytes(), bytes.size());
}

ByteView ByteView::CopyToOwnLines(std::string_view bytes) {
  using internal::kLineBytes;
  const size_t total = sizeof(internal::LineBuffer) + bytes.size();
  if (bytes.empty() || total > kLineBytes * internal::kLineClasses) return Copy(bytes);
  const auto line_class = static_cast<uint16_t>((total - 1) / kLineBytes);
  internal::SharedBlock* block = std::exchange(internal::t_spare[line_class], nullptr);
  if (block == nullptr) {
    void* mem = std::aligned_alloc(kLineBytes, (line_class + 1) * kLineBytes);
    if (mem == nullptr) throw std::bad_alloc();
    block = &(new (mem) internal::LineBuffer)->header;
    block->owner_u16 = line_class;
  }
  char* data = reinterpret_cast<internal::LineBuffer*>(block)->bytes();
  ASAN_UNPOISON_MEMORY_REGION(data, internal::LineBytesOf(line_class));
  std::memcpy(data, bytes.data(), bytes.size());
  return ByteView(block, data, bytes.size());
}

ByteView ByteView::Adopt(std::string&& s) {
  if (s.empty()) return ByteView();
  auto* holder = new internal::StringHolder{.value = std::move(s)};
  return ByteView(&holder->header, holder->value.data(), holder->value.size());
}

}  // namespace lcache
