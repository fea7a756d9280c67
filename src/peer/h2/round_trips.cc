#include "peer/h2/round_trips.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace lcache::internal {

void RoundTrips::Add(absl::Duration rtt, absl::Time now) {
  if (rtt <= absl::ZeroDuration()) return;
  const int64_t minute = absl::ToUnixSeconds(now) / 60;
  if (minute_ < 0 || minute - minute_ >= kBuckets) {
    minima_.fill(absl::InfiniteDuration());
  } else {
    // Minutes with no round trip (and those that left the window) are empty.
    for (int64_t m = minute_ + 1; m <= minute; ++m) minima_[Bucket(m)] = absl::InfiniteDuration();
  }
  minute_ = std::max(minute_, minute);
  // The usual before this one: a slow round trip is judged against the
  // link's past, not against itself.
  const absl::Duration usual = Usual();
  absl::Duration& bucket = minima_[Bucket(minute_)];
  bucket = std::min(bucket, rtt);

  const bool is_slow =
      usual != absl::InfiniteDuration() && rtt > usual * kSlowFactor && rtt > usual + kSlowMargin;
  slow_in_a_row_ = is_slow ? slow_in_a_row_ + 1 : 0;
  last_slow_.store(is_slow, std::memory_order_relaxed);
  last_us_.store(absl::ToInt64Microseconds(rtt), std::memory_order_relaxed);
  last_at_ns_.store(absl::ToUnixNanos(now), std::memory_order_relaxed);
  usual_us_.store(absl::ToInt64Microseconds(usual == absl::InfiniteDuration() ? rtt : usual),
                  std::memory_order_relaxed);
  slow_.store(slow_in_a_row_ >= kSlowInARow, std::memory_order_relaxed);
}

absl::Duration RoundTrips::Usual() const {
  if (minute_ < 0) return absl::InfiniteDuration();
  return *std::min_element(minima_.begin(), minima_.end());
}

std::string RoundTrips::Why() const {
  return absl::StrCat(
      "PING round trip ",
      absl::FormatDuration(absl::Microseconds(last_us_.load(std::memory_order_relaxed))),
      ", usually ",
      absl::FormatDuration(absl::Microseconds(usual_us_.load(std::memory_order_relaxed))));
}

}  // namespace lcache::internal
