#include "sim/lab.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "sim/policies.h"

namespace lcache::sim {

absl::StatusOr<std::vector<int64_t>> ParseSizes(std::string_view text, int64_t distinct_keys) {
  std::vector<int64_t> sizes;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(text.data(), text.size()), ',', absl::SkipEmpty())) {
    const absl::string_view given = part;
    int64_t n = 0;
    double percent = 0;
    if (absl::ConsumeSuffix(&part, "%") && absl::SimpleAtod(part, &percent) && percent > 0) {
      n = std::llround(static_cast<double>(distinct_keys) * percent / 100);
    } else if (!absl::SimpleAtoi(part, &n)) {
      n = 0;
    }
    if (n < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--sizes: \"", given,
          "\" is not a positive count, or a percentage of the distinct keys giving at least one"));
    }
    sizes.push_back(n);
  }
  if (sizes.empty()) return absl::InvalidArgumentError("--sizes: no sizes given");
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

absl::StatusOr<std::vector<LabResult>> RunLab(const Trace& trace, const LabOptions& options) {
  std::vector<uint32_t> next_uses;
  if (std::find(options.policies.begin(), options.policies.end(), "opt") !=
      options.policies.end()) {
    next_uses = NextUses(trace.keys, trace.key_space);
  }
  std::vector<LabResult> results;
  for (const std::string& policy : options.policies) {
    for (int64_t size : options.sizes) {
      const CacheConfig config{
          .entries = options.bytes ? size / options.entry_charge : size,
          .entry_charge = options.entry_charge,
          .key_space = trace.key_space,
          .next_uses = &next_uses,
          .count_policy_memory = options.bytes,
      };
      absl::StatusOr<std::unique_ptr<CachePolicy>> cache = NewCachePolicy(policy, config);
      if (!cache.ok()) return cache.status();
      LabResult r{.trace = trace.name, .policy = policy, .size = size};
      for (uint32_t key : trace.keys) r.hits += (*cache)->Access(key) ? 1 : 0;
      r.requests = static_cast<int64_t>(trace.keys.size());
      results.push_back(std::move(r));
    }
  }
  return results;
}

void WriteCsv(const std::vector<LabResult>& results, std::ostream& out) {
  out << "trace,policy,size,hit_ratio\n";
  for (const LabResult& r : results) {
    out << absl::StrFormat("%s,%s,%d,%.6f\n", r.trace, r.policy, r.size, r.hit_ratio());
  }
}

absl::Status PlotPng(const std::vector<LabResult>& results, const std::string& png_path,
                     bool bytes) {
  if (results.empty()) return absl::InvalidArgumentError("nothing to plot");
  // gnuplot reads the data inline, one block per policy ("e" ends a block).
  std::vector<std::string> policies;
  for (const LabResult& r : results) {
    if (std::find(policies.begin(), policies.end(), r.policy) == policies.end()) {
      policies.push_back(r.policy);
    }
  }
  std::string script = absl::StrCat(
      "set terminal pngcairo size 900,560 noenhanced\n"
      "set output '",
      png_path,
      "'\n"
      "set title '",
      results[0].trace,
      "'\n"
      "set logscale x\nset grid\nset key left top\n"
      "set xlabel 'cache size (",
      bytes ? "bytes" : "entries", ")'\nset ylabel 'hit ratio'\nset yrange [0:*]\nplot ");
  for (size_t i = 0; i < policies.size(); ++i) {
    absl::StrAppend(&script, i == 0 ? "" : ", ", "'-' using 1:2 with linespoints lw 2 title '",
                    policies[i], "'");
  }
  script += "\n";
  for (const std::string& p : policies) {
    for (const LabResult& r : results) {
      if (r.policy == p) absl::StrAppend(&script, r.size, " ", r.hit_ratio(), "\n");
    }
    script += "e\n";
  }
  FILE* gp = popen("gnuplot", "w");
  if (gp == nullptr)
    return absl::UnavailableError("cannot run gnuplot (apt-get install gnuplot-nox)");
  const bool written = std::fwrite(script.data(), 1, script.size(), gp) == script.size();
  const int rc = pclose(gp);
  if (!written || rc != 0) {
    return absl::InternalError(
        absl::StrCat("gnuplot failed (exit status ", rc, "); is gnuplot-nox installed?"));
  }
  return absl::OkStatus();
}

}  // namespace lcache::sim
