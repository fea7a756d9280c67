#include "lcache/origin.h"

namespace lcache {

void OriginMeter::Record(const absl::StatusOr<Loaded>& result, absl::Duration took) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  if (absl::IsNotFound(result.status())) {
    not_found_.fetch_add(1, std::memory_order_relaxed);
  } else if (!result.ok()) {
    errors_.fetch_add(1, std::memory_order_relaxed);
  } else if (!result->cacheable) {
    uncacheable_.fetch_add(1, std::memory_order_relaxed);
  }
  latency_.Record(took);
}

OriginStats OriginMeter::Snapshot() const {
  return {.requests = requests_.load(std::memory_order_relaxed),
          .not_found = not_found_.load(std::memory_order_relaxed),
          .errors = errors_.load(std::memory_order_relaxed),
          .uncacheable = uncacheable_.load(std::memory_order_relaxed),
          .latency = latency_.Snapshot()};
}

}  // namespace lcache
