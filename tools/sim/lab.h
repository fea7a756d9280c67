// The hit-ratio lab: replays one trace through policies at several sizes,
// and writes the results as CSV or as a gnuplot PNG.

#ifndef LCACHE_TOOLS_SIM_LAB_H_
#define LCACHE_TOOLS_SIM_LAB_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sim/trace.h"

namespace lcache::sim {

struct LabOptions {
  std::vector<std::string> policies;
  // Cache sizes: entries, or bytes when `bytes` is set.
  std::vector<int64_t> sizes;
  bool bytes = false;
  // len(key) + len(value) of every entry: an 8-byte key and a fixed value.
  int64_t entry_charge = 16;
};

struct LabResult {
  std::string trace;
  std::string policy;
  int64_t size = 0;  // as given: entries, or bytes with --bytes
  int64_t hits = 0;
  int64_t requests = 0;
  double hit_ratio() const {
    return requests == 0 ? 0 : static_cast<double>(hits) / static_cast<double>(requests);
  }
};

// "1000,5000" or percentages of the trace's distinct keys ("0.1%,1%"), each
// at least 1 after rounding; sorted, without duplicates.
absl::StatusOr<std::vector<int64_t>> ParseSizes(std::string_view text, int64_t distinct_keys);

// Every policy at every size, policies in the given order, sizes ascending.
absl::StatusOr<std::vector<LabResult>> RunLab(const Trace& trace, const LabOptions& options);

// The header "trace,policy,size,hit_ratio" and a row per result.
void WriteCsv(const std::vector<LabResult>& results, std::ostream& out);

// Draws hit ratio against size (log scale), one line per policy, into a PNG
// at `png_path`, with gnuplot (which must be on the PATH).
absl::Status PlotPng(const std::vector<LabResult>& results, const std::string& png_path,
                     bool bytes);

}  // namespace lcache::sim

#endif  // LCACHE_TOOLS_SIM_LAB_H_
