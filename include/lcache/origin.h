// Origin: where a group's values come from when no node holds them, as an
// object with figures of its own (a Getter is only a function). A group takes
// one in GroupOptions::origin instead of a getter; lcache-node's /metrics
// shows its figures per group. The origins shipped with the library:
// HttpOrigin (lcache/http_origin.h) and PostgresOrigin
// (lcache/postgres_origin.h), in the lcache::origin component.
//
// Load errors, as a group passes them to its callers:
//   KeyNotFoundError()   the origin says there is no such key (HTTP 404/410,
//                        zero rows); cached by nobody, as with any getter
//   DeadlineExceeded     the origin did not answer within its timeout
//   Unavailable          it cannot be reached (connection refused, backing
//                        off after failures)
//   any other code       it answered with something that is not a value;
//                        the message names what (an HTTP status, an SQL error)
//
// Thread-safety: Load and stats are called from many threads at once.

#ifndef LCACHE_ORIGIN_H_
#define LCACHE_ORIGIN_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/group.h"
#include "lcache/latency_histogram.h"

namespace lcache {

struct OriginStats {
  int64_t requests = 0;     // loads asked of the origin, whatever their outcome
  int64_t not_found = 0;    // of requests: answered "no such key"
  int64_t errors = 0;       // of requests: failed (timeouts, unreachable, bad answers)
  int64_t uncacheable = 0;  // of requests: values the origin said not to keep (no-store)
  LatencySnapshot latency;  // every request, from the call to its answer or failure
};

class Origin {
 public:
  virtual ~Origin() = default;

  // The value of `key` (with its time to live, or Loaded::cacheable false),
  // or one of the errors above.
  virtual absl::StatusOr<Loaded> Load(std::string_view key) = 0;
  // A short name of the kind of origin ("http", "postgres"): a metric label.
  virtual std::string_view kind() const = 0;
  // Where it loads from, for logs; never a credential.
  virtual const std::string& endpoint() const = 0;
  virtual OriginStats stats() const = 0;
  // Reaches the origin once, so that a program can report at start what can
  // never work (InvalidArgument: a query the database refuses) apart from
  // what may pass (the origin is down now). OK by default.
  virtual absl::Status Check() { return absl::OkStatus(); }
};

// Counts an origin's requests into OriginStats; for implementations.
class OriginMeter {
 public:
  // Counts one request that took `took` and ended in `result`.
  void Record(const absl::StatusOr<Loaded>& result, absl::Duration took);
  // Runs `request` (returning absl::StatusOr<Loaded>), Records it, returns its result.
  template <typename Request>
  absl::StatusOr<Loaded> Measure(Request&& request) {
    const absl::Time start = absl::Now();
    absl::StatusOr<Loaded> result = std::forward<Request>(request)();
    Record(result, absl::Now() - start);
    return result;
  }
  OriginStats Snapshot() const;

 private:
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> not_found_{0};
  std::atomic<int64_t> errors_{0};
  std::atomic<int64_t> uncacheable_{0};
  LatencyHistogram latency_;
};

}  // namespace lcache

#endif  // LCACHE_ORIGIN_H_
