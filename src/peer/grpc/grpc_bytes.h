// Moving message bytes in and out of gRPC's ByteBuffer, for both sides of
// the gRPC transport (the messages are JSON, so there is no protobuf type).

#ifndef LCACHE_SRC_PEER_GRPC_GRPC_BYTES_H_
#define LCACHE_SRC_PEER_GRPC_GRPC_BYTES_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

namespace lcache::internal {

// The buffer's bytes, or nullopt if gRPC cannot read them.
inline std::optional<std::string> BytesOf(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return std::nullopt;
  std::string out;
  out.reserve(buffer.Length());
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// A buffer that owns `bytes` without copying them; gRPC frees them.
inline grpc::ByteBuffer ByteBufferOf(std::string bytes) {
  auto* owned = new std::string(std::move(bytes));
  grpc::Slice slice(
      owned->data(), owned->size(), [](void* p) { delete static_cast<std::string*>(p); }, owned);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_GRPC_GRPC_BYTES_H_
