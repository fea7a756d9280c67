#include "node_source.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "lcache/hash_ring.h"
#include "lcache/http_origin.h"
#include "lcache/log_key.h"
#include "lcache/postgres_origin.h"
#include "spdlog/spdlog.h"

namespace lcache::tools {
namespace {

absl::string_view Absl(std::string_view s) { return {s.data(), s.size()}; }

// Logs loads as `logging` says. Sampled: the first kSampledLoadLinesPerSecond
// of each second, and when a second has passed, how many were left out.
class LoadLog {
 public:
  explicit LoadLog(LoadLogging logging) : logging_(logging) {}

  void operator()(std::string_view key) {
    if (logging_ == LoadLogging::kNone) return;
    if (logging_ == LoadLogging::kSampled && !Admit()) return;
    spdlog::info("[getter] load key={}", LogKey(key));
  }

 private:
  bool Admit() {
    const int64_t second = absl::ToUnixSeconds(absl::Now());
    std::lock_guard lock(mu_);
    if (second != second_) {
      if (left_out_ > 0) {
        spdlog::info("[getter] {} more loads not logged (-log-loads=sampled)", left_out_);
      }
      second_ = second;
      logged_ = 0;
      left_out_ = 0;
    }
    if (logged_ < kSampledLoadLinesPerSecond) {
      ++logged_;
      return true;
    }
    ++left_out_;
    return false;
  }

  const LoadLogging logging_;
  std::mutex mu_;
  int64_t second_ = 0;
  int logged_ = 0;
  int64_t left_out_ = 0;
};

Getter DemoSource(std::shared_ptr<LoadLog> log_load) {
  static const auto* const scores = new absl::flat_hash_map<std::string, std::string>{
      {"Tom", "630"}, {"Jack", "589"}, {"Sam", "567"}};
  return [log_load = std::move(log_load)](std::string_view key) -> absl::StatusOr<Loaded> {
    (*log_load)(key);
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
absl::StatusOr<Getter> DirSource(std::string path, uint32_t delay_ms,
                                 std::shared_ptr<LoadLog> log_load) {
  if (!std::filesystem::is_directory(path)) {
    return absl::InvalidArgumentError("-source dir:PATH: \"" + path + "\" is not a directory");
  }
  return Getter([path = std::move(path), delay_ms,
                 log_load = std::move(log_load)](std::string_view key) -> absl::StatusOr<Loaded> {
    (*log_load)(key);
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

absl::StatusOr<LoadLogging> ParseLoadLogging(std::string_view flag) {
  if (flag == "all") return LoadLogging::kAll;
  if (flag == "sampled") return LoadLogging::kSampled;
  if (flag == "none") return LoadLogging::kNone;
  return absl::InvalidArgumentError("-log-loads must be all, sampled or none, got \"" +
                                    LogKey(flag) + "\"");
}

absl::StatusOr<Getter> MakeSource(std::string_view spec, LoadLogging logging) {
  auto log_load = std::make_shared<LoadLog>(logging);
  if (spec == "demo") return DemoSource(std::move(log_load));
  if (spec.starts_with("dir:")) {
    std::string_view rest = spec.substr(4);
    uint32_t delay_ms = 0;
    if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
      if (!absl::SimpleAtoi(Absl(rest.substr(colon + 1)), &delay_ms)) return BadSpec(spec);
      rest = rest.substr(0, colon);
    }
    if (rest.empty()) return BadSpec(spec);
    return DirSource(std::string(rest), delay_ms, std::move(log_load));
  }
  std::vector<absl::string_view> parts = absl::StrSplit(Absl(spec), ':');
  if (parts.size() < 2 || parts.size() > 3 || parts[0] != "synthetic") return BadSpec(spec);
  uint32_t bytes = 0;
  uint32_t delay_ms = 0;
  if (!absl::SimpleAtoi(parts[1], &bytes) || bytes > (64u << 20)) return BadSpec(spec);
  if (parts.size() == 3 && !absl::SimpleAtoi(parts[2], &delay_ms)) return BadSpec(spec);
  return Getter([bytes, delay_ms,
                 log_load = std::move(log_load)](std::string_view key) -> absl::StatusOr<Loaded> {
    (*log_load)(key);
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    return ByteView::Adopt(SyntheticValue(key, bytes));
  });
}

}  // namespace lcache::tools
