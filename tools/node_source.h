// The data a node's group serves: what `lcache-node -source` names.
//
//   demo                        the Go program's scores: Tom=630, Jack=589,
//                               Sam=567; any other key is not found
//   synthetic:BYTES[:DELAY_MS]  any key, a deterministic value of BYTES bytes
//                               (the same on every node), after DELAY_MS
//   dir:PATH[:DELAY_MS]         the contents of the file PATH/<key in hex>,
//                               returned DELAY_MS after it was read (so the
//                               value may be out of date when it arrives); no
//                               file: not found. A
//                               changing origin, for tests of Set and Remove
//                               (write the file, then Set or Remove the key)
//
//   http://HOST:PORT/PATH/{key}  an HTTP origin (also https://): HttpOrigin
//   postgres://USER@HOST:PORT/DB  a PostgreSQL origin running -source-query:
//                                 PostgresOrigin (also postgresql://)
//
// Loads of demo, synthetic and dir are logged as `[getter] load key=KEY`,
// the key last on the line and escaped (LogKey), as `-log-loads` says: every
// one (kAll, what tests that count loads use), the first few of each second
// and a count of the rest (kSampled, the default: a miss storm must not fill
// the disk), or none. The origins count theirs in /metrics instead.

#ifndef LCACHE_TOOLS_NODE_SOURCE_H_
#define LCACHE_TOOLS_NODE_SOURCE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/group.h"
#include "lcache/origin.h"

namespace lcache::tools {

enum class LoadLogging { kAll, kSampled, kNone };
inline constexpr int kSampledLoadLinesPerSecond = 10;

// The -log-loads value (all, sampled, none); InvalidArgument otherwise.
absl::StatusOr<LoadLogging> ParseLoadLogging(std::string_view flag);

// The getter for a -source value; InvalidArgument for a malformed one.
absl::StatusOr<Getter> MakeSource(std::string_view spec,
                                  LoadLogging logging = LoadLogging::kSampled);

// Whether the -source value names an origin (http, https, postgres).
bool IsOriginSpec(std::string_view spec);

// The -origin-* and -source-* flags.
struct OriginFlags {
  absl::Duration timeout = absl::Milliseconds(1500);
  size_t max_value_bytes = size_t{16} << 20;
  int connections = 8;
  std::string query = {};          // postgres
  std::string password_file = {};  // postgres
  std::string ca_file = {};        // https
};

// The origin an IsOriginSpec value names; InvalidArgument for a bad one.
absl::StatusOr<std::shared_ptr<Origin>> MakeOrigin(std::string_view spec,
                                                   const OriginFlags& flags);

// The value synthetic:BYTES gives `key`.
std::string SyntheticValue(std::string_view key, size_t bytes);

}  // namespace lcache::tools

#endif  // LCACHE_TOOLS_NODE_SOURCE_H_
