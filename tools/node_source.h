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
// Every load is logged as `[getter] load key=KEY`, the key last on the line,
// as the Go program does.

#ifndef LCACHE_TOOLS_NODE_SOURCE_H_
#define LCACHE_TOOLS_NODE_SOURCE_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "lcache/group.h"

namespace lcache::tools {

// The getter for a -source value; InvalidArgument for a malformed one.
absl::StatusOr<Getter> MakeSource(std::string_view spec);

// The value synthetic:BYTES gives `key`.
std::string SyntheticValue(std::string_view key, size_t bytes);

}  // namespace lcache::tools

#endif  // LCACHE_TOOLS_NODE_SOURCE_H_
