#include "lcache/byte_view.h"

#include <cstdlib>
#include <cstring>
#include <new>

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

}  // namespace

void SharedBlock::Free() const {
  switch (kind) {
    case Kind::kString:
      delete reinterpret_cast<const StringHolder*>(this);
      return;
    case Kind::kBuffer:
    case Kind::kEntry:
      // Both are trivially destructible blobs from std::malloc.
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

ByteView ByteView::Adopt(std::string&& s) {
  if (s.empty()) return ByteView();
  auto* holder = new internal::StringHolder{.value = std::move(s)};
  return ByteView(&holder->header, holder->value.data(), holder->value.size());
}

}  // namespace lcache
