#include "sim/trace.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace lcache::sim {
namespace {

constexpr int64_t kDefaultKeys = 1000000;
constexpr int64_t kDefaultLoopKeys = 100000;
constexpr int kShiftPhases = 10;

struct Spec {
  std::string kind;
  double alpha = 0;
  int64_t keys = 0;
  int64_t requests = 0;
};

// A uniform double in [0, 1) from 53 random bits, the same everywhere.
double Uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Zipf(alpha) ranks 0..n-1 by inverting the cumulative distribution.
class ZipfSampler {
 public:
  ZipfSampler(double alpha, int64_t n) : cdf_(static_cast<size_t>(n)) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      sum += std::pow(static_cast<double>(i + 1), -alpha);
      cdf_[static_cast<size_t>(i)] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  uint32_t Next(std::mt19937_64& rng) const {
    const auto it = std::upper_bound(cdf_.begin(), cdf_.end(), Uniform(rng));
    return static_cast<uint32_t>(std::min<ptrdiff_t>(it - cdf_.begin(), std::ssize(cdf_) - 1));
  }

 private:
  std::vector<double> cdf_;
};

absl::StatusOr<Spec> ParseSpec(std::string_view text) {
  std::vector<std::string> parts = absl::StrSplit(absl::string_view(text.data(), text.size()), ':');
  Spec spec;
  spec.kind = parts[0];
  const bool has_alpha = spec.kind != "loop";
  spec.keys = spec.kind == "loop" ? kDefaultLoopKeys : kDefaultKeys;
  size_t i = 1;
  auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(
        absl::StrCat("trace ", std::string(text), ": ", why, " (see --help for the generators)"));
  };
  if (has_alpha) {
    if (parts.size() < 2 || !absl::SimpleAtod(parts[1], &spec.alpha) || spec.alpha <= 0 ||
        spec.alpha > 3) {
      return bad("expected a Zipf exponent in (0, 3] after the name");
    }
    i = 2;
  }
  if (parts.size() > i && !absl::SimpleAtoi(parts[i], &spec.keys)) return bad("bad key count");
  if (parts.size() > i + 1 && !absl::SimpleAtoi(parts[i + 1], &spec.requests)) {
    return bad("bad request count");
  }
  if (parts.size() > i + 2) return bad("too many fields");
  if (spec.keys < 1 || spec.keys > (int64_t{1} << 30)) return bad("key count out of range");
  if (spec.requests == 0) spec.requests = (spec.kind == "loop" ? 10 : 5) * spec.keys;
  if (spec.requests < 1 || spec.requests > (int64_t{1} << 31)) {
    return bad("request count out of range");
  }
  return spec;
}

void Finish(Trace* t) {
  std::vector<bool> seen(t->key_space);
  t->distinct = 0;
  for (uint32_t k : t->keys) {
    if (!seen[k]) seen[k] = true, ++t->distinct;
  }
}

}  // namespace

absl::StatusOr<TraceFormat> ParseTraceFormat(std::string_view name) {
  if (name == "keys") return TraceFormat::kKeys;
  if (name == "arc") return TraceFormat::kArc;
  return absl::InvalidArgumentError(
      absl::StrCat("--format must be keys or arc, got ", std::string(name)));
}

std::string GeneratorHelp() {
  return "Trace generators (in place of a path; KEYS and REQUESTS optional):\n"
         "  zipf:ALPHA[:KEYS[:REQUESTS]]      Zipf(ALPHA) over KEYS keys (default 1000000),\n"
         "                                    REQUESTS requests (default 5 x KEYS);\n"
         "                                    e.g. zipf:0.6, zipf:0.8, zipf:0.99\n"
         "  zipfscan:ALPHA[:KEYS[:REQUESTS]]  the same, but after every KEYS/2 Zipf requests a\n"
         "                                    one-pass scan of KEYS/8 keys never seen before\n"
         "  loop:KEYS[:REQUESTS]              keys 0..KEYS-1 in order, over and over\n"
         "                                    (default 100000 keys, 10 x KEYS requests)\n"
         "  shift:ALPHA[:KEYS[:REQUESTS]]     Zipf(ALPHA) whose popular keys move: 10 phases,\n"
         "                                    each maps rank r to key (r + phase x KEYS/20) mod "
         "KEYS\n"
         "Each generator is deterministic given --seed.\n";
}

bool IsGeneratorSpec(std::string_view spec) {
  const std::string_view kind = spec.substr(0, spec.find(':'));
  return spec.find(':') != std::string_view::npos &&
         (kind == "zipf" || kind == "zipfscan" || kind == "loop" || kind == "shift");
}

absl::StatusOr<Trace> GenerateTrace(std::string_view text, uint64_t seed) {
  if (!IsGeneratorSpec(text)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a trace generator: ", std::string(text), "\n", GeneratorHelp()));
  }
  absl::StatusOr<Spec> spec = ParseSpec(text);
  if (!spec.ok()) return spec.status();
  Trace t;
  t.name = std::string(text);
  const auto n = static_cast<uint32_t>(spec->keys);
  const auto requests = static_cast<size_t>(spec->requests);
  t.keys.reserve(requests);
  std::mt19937_64 rng(seed);
  if (spec->kind == "loop") {
    for (size_t i = 0; i < requests; ++i) t.keys.push_back(static_cast<uint32_t>(i % n));
    t.key_space = n;
  } else if (spec->kind == "zipf") {
    const ZipfSampler zipf(spec->alpha, n);
    for (size_t i = 0; i < requests; ++i) t.keys.push_back(zipf.Next(rng));
    t.key_space = n;
  } else if (spec->kind == "zipfscan") {
    const ZipfSampler zipf(spec->alpha, n);
    const size_t period = std::max<size_t>(1, n / 2);
    const size_t scan = std::max<size_t>(1, n / 8);
    uint32_t fresh = n;
    while (t.keys.size() < requests) {
      for (size_t i = 0; i < period && t.keys.size() < requests; ++i)
        t.keys.push_back(zipf.Next(rng));
      for (size_t i = 0; i < scan && t.keys.size() < requests; ++i) t.keys.push_back(fresh++);
    }
    t.key_space = fresh;
  } else {  // shift
    const ZipfSampler zipf(spec->alpha, n);
    const size_t phase_length = std::max<size_t>(1, requests / kShiftPhases);
    const uint64_t offset = std::max<uint32_t>(1, n / 20);
    for (size_t i = 0; i < requests; ++i) {
      const uint64_t phase = i / phase_length;
      t.keys.push_back(static_cast<uint32_t>((zipf.Next(rng) + phase * offset) % n));
    }
    t.key_space = n;
  }
  Finish(&t);
  return t;
}

absl::StatusOr<Trace> ReadTrace(std::istream& in, TraceFormat format, std::string name) {
  Trace t;
  t.name = std::move(name);
  absl::flat_hash_map<std::string, uint32_t> ids;
  auto add = [&](std::string key) -> absl::Status {
    auto [it, inserted] = ids.try_emplace(std::move(key), static_cast<uint32_t>(ids.size()));
    if (ids.size() > UINT32_MAX / 2) return absl::OutOfRangeError("too many distinct keys");
    t.keys.push_back(it->second);
    return absl::OkStatus();
  };
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty()) continue;
    if (format == TraceFormat::kKeys) {
      if (absl::Status s = add(std::string(l)); !s.ok()) return s;
      continue;
    }
    std::vector<absl::string_view> fields = absl::StrSplit(l, ' ', absl::SkipEmpty());
    uint64_t start = 0;
    int64_t count = 0;
    if (fields.size() < 2 || !absl::SimpleAtoi(fields[0], &start) ||
        !absl::SimpleAtoi(fields[1], &count) || count < 0 || count > (int64_t{1} << 24)) {
      return absl::InvalidArgumentError(absl::StrCat(
          t.name, ":", line_no, ": expected \"start count ...\" (ARC format), got \"", l, "\""));
    }
    for (int64_t i = 0; i < count; ++i) {
      if (absl::Status s = add(absl::StrCat(start + static_cast<uint64_t>(i))); !s.ok()) return s;
    }
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(t.name, ": read error"));
  t.key_space = static_cast<uint32_t>(ids.size());
  t.distinct = t.key_space;
  return t;
}

absl::StatusOr<Trace> LoadTrace(std::string_view spec, TraceFormat format, uint64_t seed) {
  if (IsGeneratorSpec(spec)) return GenerateTrace(spec, seed);
  std::ifstream in{std::string(spec)};
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open trace ", std::string(spec),
                                            " (neither a file nor a generator; see --help)"));
  }
  return ReadTrace(in, format, std::string(spec));
}

}  // namespace lcache::sim
