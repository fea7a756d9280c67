#include "lcache/latency_histogram.h"

#include <algorithm>

namespace lcache {
namespace {

// The calling thread's stripe: threads take stripes round-robin as they first
// record, so up to `stripes` threads never share one.
size_t ThreadStripe(size_t stripes) {
  static std::atomic<size_t> next{0};
  thread_local const size_t ticket = next.fetch_add(1, std::memory_order_relaxed);
  return ticket % stripes;
}

}  // namespace

size_t LatencyHistogram::BucketOf(absl::Duration d) {
  const int64_t ns = std::max<int64_t>(0, absl::ToInt64Nanoseconds(d));
  return static_cast<size_t>(
      std::lower_bound(kLatencyBucketBoundsNs.begin(), kLatencyBucketBoundsNs.end(), ns) -
      kLatencyBucketBoundsNs.begin());
}

void LatencyHistogram::Record(absl::Duration d) {
  Stripe& s = stripes_[ThreadStripe(kStripes)];
  s.counts[BucketOf(d)].fetch_add(1, std::memory_order_relaxed);
  s.sum_ns.fetch_add(std::max<int64_t>(0, absl::ToInt64Nanoseconds(d)), std::memory_order_relaxed);
}

LatencySnapshot LatencyHistogram::Snapshot() const {
  LatencySnapshot snap;
  int64_t sum_ns = 0;
  for (const Stripe& s : stripes_) {
    for (size_t b = 0; b < kLatencyBuckets; ++b) {
      snap.counts[b] += s.counts[b].load(std::memory_order_relaxed);
    }
    sum_ns += s.sum_ns.load(std::memory_order_relaxed);
  }
  for (int64_t c : snap.counts) snap.count += c;
  snap.sum = absl::Nanoseconds(sum_ns);
  return snap;
}

}  // namespace lcache
