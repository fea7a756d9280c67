#include "peer/health_check.h"

#include <cstdint>

namespace lcache::internal {

std::optional<std::string> HealthCheckService(std::string_view in) {
  size_t pos = 0;
  auto varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && pos < in.size(); shift += 7) {
      const auto byte = static_cast<uint8_t>(in[pos++]);
      *v |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  };
  std::string service;
  while (pos < in.size()) {
    uint64_t tag = 0, n = 0;
    if (!varint(&tag) || (tag >> 3) == 0) return std::nullopt;  // field 0 does not exist
    switch (tag & 7) {
      case 0:  // varint
        if (!varint(&n)) return std::nullopt;
        break;
      case 1:  // 64-bit
        n = 8;
        if (in.size() - pos < n) return std::nullopt;
        pos += n;
        break;
      case 2:  // length-delimited
        if (!varint(&n) || in.size() - pos < n) return std::nullopt;
        if ((tag >> 3) == 1) service.assign(in.substr(pos, n));
        pos += n;
        break;
      case 5:  // 32-bit
        n = 4;
        if (in.size() - pos < n) return std::nullopt;
        pos += n;
        break;
      default:
        return std::nullopt;
    }
  }
  return service;
}

std::string HealthCheckResponse(bool serving) {
  // Field 1, varint; SERVING = 1, NOT_SERVING = 2.
  return std::string{0x08, serving ? '\x01' : '\x02'};
}

}  // namespace lcache::internal
