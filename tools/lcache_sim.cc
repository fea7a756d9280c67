// lcache-sim: replays a key trace through cache policies at several sizes
// and prints their hit ratios (docs/EVICTION.md shows what it found).
//
//   lcache-sim --trace zipf:0.99 --sizes 1000,10000 --policies lru,lru2,tinylfu,arc,opt --csv
//   lcache-sim --trace my.trace --format keys --sizes 1%,5% --plot out.png
//
// Exit status: 0 on success, 2 on bad input.

#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "go_flags.h"
#include "sim/lab.h"
#include "sim/policies.h"
#include "sim/trace.h"

ABSL_FLAG(std::string, trace, "", "a trace file, or a generator (listed above)");
ABSL_FLAG(std::string, format, "keys", "format of a trace file: keys (one per line) or arc");
ABSL_FLAG(std::string, sizes, "0.1%,1%,10%",
          "cache sizes, comma-separated: entries (or bytes with --bytes), or a percentage "
          "of the trace's distinct keys such as 1%");
ABSL_FLAG(std::string, policies, "lru,lru2,tinylfu,arc,sieve,s3fifo,lfu,opt",
          "policies, comma-separated: lru, lru2 and tinylfu are the library's stores; arc, "
          "sieve, s3fifo, lfu (perfect LFU: exact counts, never aged) and opt (Belady's "
          "offline optimum) are references; tinylfu-fixed:F is tinylfu with its window fixed "
          "at the fraction F (e.g. 0.2)");
ABSL_FLAG(bool, csv, false, "print CSV: a header, then trace,policy,size,hit_ratio rows");
ABSL_FLAG(bool, bytes, false,
          "sizes are byte capacities; every entry is an 8-byte key and a value of "
          "--value-bytes, and the reference policies hold size / (8 + value-bytes) entries");
ABSL_FLAG(int64_t, value_bytes, 8, "value size of every entry the stores hold");
ABSL_FLAG(uint64_t, seed, 1, "seed of the trace generator");
ABSL_FLAG(std::string, plot, "", "also draw hit ratio against size into this PNG (gnuplot)");

namespace {

int Fail(const std::string& message) {
  std::cerr << "lcache-sim: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lcache::sim;
  const std::string usage = absl::StrCat(
      "lcache-sim --trace PATH|GENERATOR [--format keys|arc] [--sizes N,N|P%,...]\n"
      "           [--policies lru,lru2,tinylfu,arc,sieve,s3fifo,lfu,opt] [--csv] [--bytes]\n"
      "           [--seed N] [--plot out.png]\n\n",
      GeneratorHelp());
  const std::vector<std::string> positional =
      lcache::tools::ParseGoStyleCommandLine(argc, argv, usage.c_str(), "lcache_sim.cc");
  if (positional.size() != 1) return Fail("unexpected arguments; see --help");
  if (absl::GetFlag(FLAGS_trace).empty()) return Fail(absl::StrCat("--trace is required\n", usage));
  absl::StatusOr<TraceFormat> format = ParseTraceFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return Fail(std::string(format.status().message()));
  const int64_t value_bytes = absl::GetFlag(FLAGS_value_bytes);
  if (value_bytes < 1) return Fail("--value-bytes must be at least 1");

  absl::StatusOr<Trace> trace =
      LoadTrace(absl::GetFlag(FLAGS_trace), *format, absl::GetFlag(FLAGS_seed));
  if (!trace.ok()) return Fail(std::string(trace.status().message()));
  LabOptions options{
      .policies = absl::StrSplit(absl::GetFlag(FLAGS_policies), ',', absl::SkipEmpty()),
      .sizes = {},
      .bytes = absl::GetFlag(FLAGS_bytes),
      .entry_charge = 8 + value_bytes,
  };
  absl::StatusOr<std::vector<int64_t>> sizes =
      ParseSizes(absl::GetFlag(FLAGS_sizes), trace->distinct);
  if (!sizes.ok()) return Fail(std::string(sizes.status().message()));
  if (options.bytes) {
    // Percentages are of distinct keys, so in bytes they scale by the charge.
    if (absl::GetFlag(FLAGS_sizes).find('%') != std::string::npos) {
      for (int64_t& s : *sizes) s *= options.entry_charge;
    }
  }
  options.sizes = *sizes;

  absl::StatusOr<std::vector<LabResult>> results = RunLab(*trace, options);
  if (!results.ok()) return Fail(std::string(results.status().message()));
  if (absl::GetFlag(FLAGS_csv)) {
    WriteCsv(*results, std::cout);
  } else {
    std::cout << absl::StrFormat("trace %s: %d requests, %d distinct keys\n", trace->name,
                                 trace->keys.size(), trace->distinct);
    std::cout << absl::StrFormat("%-8s %12s %9s\n", "policy", options.bytes ? "bytes" : "entries",
                                 "hit ratio");
    for (const LabResult& r : *results) {
      std::cout << absl::StrFormat("%-8s %12d %9.4f\n", r.policy, r.size, r.hit_ratio());
    }
  }
  if (const std::string png = absl::GetFlag(FLAGS_plot); !png.empty()) {
    if (absl::Status s = PlotPng(*results, png, options.bytes); !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }
  return 0;
}
