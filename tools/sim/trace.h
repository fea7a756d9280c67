// Traces for lcache-sim: key sequences, generated or read from files.
//
// A Trace holds keys as dense ids (0 .. key_space-1), so that the reference
// policies can keep per-key state in arrays. Generators are deterministic:
// the same spec and seed give the same trace on every machine (they use
// std::mt19937_64, whose output the standard fixes, and their own
// distributions). Readers map each distinct key of a file to the next id.

#ifndef LCACHE_TOOLS_SIM_TRACE_H_
#define LCACHE_TOOLS_SIM_TRACE_H_

#include <cstdint>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace lcache::sim {

struct Trace {
  std::string name;
  std::vector<uint32_t> keys;
  uint32_t key_space = 0;  // every key is below this
  uint32_t distinct = 0;   // how many different keys occur
};

enum class TraceFormat {
  kKeys,  // one key per line; blank lines are skipped
  kArc,   // ARC/UMass block traces: "start count ignored ignored" per line,
          // meaning the keys start, start+1, ..., start+count-1
};

absl::StatusOr<TraceFormat> ParseTraceFormat(std::string_view name);

// What --help prints: the generator specs and their defaults.
std::string GeneratorHelp();

// Whether `spec` names a generator (as opposed to a file).
bool IsGeneratorSpec(std::string_view spec);

// Generates the trace `spec` (see GeneratorHelp) from `seed`.
absl::StatusOr<Trace> GenerateTrace(std::string_view spec, uint64_t seed);

// Reads a trace in `format`; `name` labels it in the output.
absl::StatusOr<Trace> ReadTrace(std::istream& in, TraceFormat format, std::string name);

// A generator for a generator spec, otherwise the file at `spec`.
absl::StatusOr<Trace> LoadTrace(std::string_view spec, TraceFormat format, uint64_t seed);

}  // namespace lcache::sim

#endif  // LCACHE_TOOLS_SIM_TRACE_H_
