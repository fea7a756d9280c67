#include "node_source.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "lcache/hash_ring.h"
#include "lcache/http_origin.h"
#include "lcache/postgres_origin.h"
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
  return absl::InvalidArgumentError(
      "-source must be demo, synthetic:BYTES[:DELAY_MS], dir:PATH[:DELAY_MS], an "
      "http(s)://.../{key} URL or a postgres:// URL, got \"" +
      std::string(spec) + "\"");
}

// dir:PATH: each key's value is a file named by the key's bytes in hex (any
// byte may be in a key; a hex name is always a valid file name).
absl::StatusOr<Getter> DirSource(std::string path, uint32_t delay_ms) {
  if (!std::filesystem::is_directory(path)) {
    return absl::InvalidArgumentError("-source dir:PATH: \"" + path + "\" is not a directory");
  }
  return Getter([path = std::move(path), delay_ms](std::string_view key) -> absl::StatusOr<Loaded> {
    LogLoad(key);
    std::ifstream file(path + "/" + absl::BytesToHexString(Absl(key)), std::ios::binary);
    std::string value;
    if (file) value.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    // After the read, as a database's answer travels after its snapshot: the
    // value may be out of date by the time it arrives.
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    if (!file.is_open()) return KeyNotFoundError();
    if (file.bad()) return absl::UnavailableError("lcache: cannot read the origin's file");
    return ByteView::Adopt(std::move(value));
  });
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

bool IsOriginSpec(std::string_view spec) {
  return spec.starts_with("http://") || spec.starts_with("https://") ||
         spec.starts_with("postgres://") || spec.starts_with("postgresql://");
}

absl::StatusOr<std::shared_ptr<Origin>> MakeOrigin(std::string_view spec,
                                                   const OriginFlags& flags) {
  if (spec.starts_with("http")) {
    if (!flags.query.empty()) {
      return absl::InvalidArgumentError("-source-query is for a postgres:// source only");
    }
    absl::StatusOr<std::shared_ptr<HttpOrigin>> http = HttpOrigin::Create({
        .url = std::string(spec),
        .timeout = flags.timeout,
        .max_value_bytes = flags.max_value_bytes,
        .max_idle_connections = flags.connections,
        .ca_file = flags.ca_file,
    });
    if (!http.ok()) return http.status();
    return std::shared_ptr<Origin>(*std::move(http));
  }
  absl::StatusOr<std::shared_ptr<PostgresOrigin>> pg = PostgresOrigin::Create({
      .url = std::string(spec),
      .query = flags.query,
      .password_file = flags.password_file,
      .connections = flags.connections,
      .timeout = flags.timeout,
      .max_value_bytes = flags.max_value_bytes,
  });
  if (!pg.ok()) return pg.status();
  return std::shared_ptr<Origin>(*std::move(pg));
}

absl::StatusOr<Getter> MakeSource(std::string_view spec) {
  if (spec == "demo") return DemoSource();
  if (spec.starts_with("dir:")) {
    std::string_view rest = spec.substr(4);
    uint32_t delay_ms = 0;
    if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
      if (!absl::SimpleAtoi(Absl(rest.substr(colon + 1)), &delay_ms)) return BadSpec(spec);
      rest = rest.substr(0, colon);
    }
    if (rest.empty()) return BadSpec(spec);
    return DirSource(std::string(rest), delay_ms);
  }
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
