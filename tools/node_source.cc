#include "node_source.h"

#include <chrono>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "lcache/hash_ring.h"
#include "spdlog/spdlog.h"

namespace lcache::tools {
namespace {

absl::string_view Absl(std::string_view s) { return {s.data(), s.size()}; }

void LogLoad(std::string_view key) { spdlog::info("[getter] load key={}", key); }

Getter DemoSource() {
  static const auto* const scores = new absl::flat_hash_map<std::string, std::string>{
      {"Tom", "630"}, {"Jack", "589"}, {"Sam", "567"}};
  return [](std::string_view key) -> absl::StatusOr<Loaded> {
    LogLoad(key);
    auto it = scores->find(Absl(key));
    if (it == scores->end()) return KeyNotFoundError();
    return ByteView::Copy(it->second);
  };
}

absl::Status BadSpec(std::string_view spec) {
  return absl::InvalidArgumentError("-source must be demo or synthetic:BYTES[:DELAY_MS], got \"" +
                                    std::string(spec) + "\"");
}

}  // namespace

std::string SyntheticValue(std::string_view key, size_t bytes) {
  // A keyed pattern: the key's CRC seeds a byte sequence, so values differ
  // per key and every node computes the same bytes.
  std::string v(bytes, '\0');
  uint32_t x = HashRing::Crc32(key) | 1;
  for (char& c : v) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    c = static_cast<char>('a' + x % 26);
  }
  return v;
}

absl::StatusOr<Getter> MakeSource(std::string_view spec) {
  if (spec == "demo") return DemoSource();
  std::vector<absl::string_view> parts = absl::StrSplit(Absl(spec), ':');
  if (parts.size() < 2 || parts.size() > 3 || parts[0] != "synthetic") return BadSpec(spec);
  uint32_t bytes = 0;
  uint32_t delay_ms = 0;
  if (!absl::SimpleAtoi(parts[1], &bytes) || bytes > (64u << 20)) return BadSpec(spec);
  if (parts.size() == 3 && !absl::SimpleAtoi(parts[2], &delay_ms)) return BadSpec(spec);
  return Getter([bytes, delay_ms](std::string_view key) -> absl::StatusOr<Loaded> {
    LogLoad(key);
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    return ByteView::Adopt(SyntheticValue(key, bytes));
  });
}

}  // namespace lcache::tools
