// Whether the link to a peer is slow: its PING round trips, against its own
// usual (a latency-based outlier rule). The lean client PINGs each peer
// connection at most once a second while calls go out on it (h2_client.cc),
// and feeds each answer here.
//
// Why PINGs and not the calls' own latency: a call's time includes the
// owner's getter, and an owner with a slow origin is not a slow peer
// (ejecting it would multiply origin loads for nothing). A PING is answered
// by the peer's HTTP/2 layer as soon as its loop reads it: it measures the
// network and the peer's loop, which is what a caller waits on besides the
// load.
//
// The rule: the usual round trip is the smallest seen over the last few
// minutes (kUsualWindow); a round trip is slow when it is above both
// kSlowFactor times the usual and the usual plus kSlowMargin (so loopback's
// microseconds of jitter never count); the link is slow after kSlowInARow
// slow round trips in a row, and no longer slow at the first that is not
// (or kStale after the last, if no more come). A fault that lasts longer
// than the window becomes the usual.
//
// A loop too busy to read its answers in time would see every link slow:
// the lean client judges none slow when most of a loop's links look slow at
// once (h2_client.cc, JudgeLinks).
//
// Thread-safety: Add from one thread at a time (the connection's loop);
// slow(), recent() and Why() from any thread.

#ifndef LCACHE_SRC_PEER_H2_ROUND_TRIPS_H_
#define LCACHE_SRC_PEER_H2_ROUND_TRIPS_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace lcache::internal {

// The steady clock, as an absl::Time (from an arbitrary start, such as boot).
inline absl::Time SteadyNow() {
  return absl::FromUnixNanos(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count());
}

class RoundTrips {
 public:
  static constexpr int kSlowFactor = 8;
  static constexpr absl::Duration kSlowMargin = absl::Milliseconds(20);
  static constexpr int kSlowInARow = 3;
  static constexpr int kUsualWindowMinutes = 5;
  static constexpr absl::Duration kUsualWindow = absl::Minutes(kUsualWindowMinutes);

  // One PING's round trip, answered at `now` (SteadyNow: a wall clock that
  // steps would make round trips up). One that is not positive is ignored.
  void Add(absl::Duration rtt, absl::Time now);

  // Slow, as the last round trip (within kStale of `now`) left it: a link
  // that has carried nothing lately is not judged on its past. `now` is
  // read only when the last round trip was slow: pass SteadyNow.
  template <typename Now>
  bool slow(Now now) const {
    return slow_.load(std::memory_order_relaxed) &&
           absl::FromUnixNanos(last_at_ns_.load(std::memory_order_relaxed)) + kStale > now();
  }
  static constexpr absl::Duration kStale = absl::Seconds(10);
  // Whether the last round trip alone was slow (the link is slow after
  // kSlowInARow of them).
  bool last_slow() const { return last_slow_.load(std::memory_order_relaxed); }
  // Whether a round trip came within kStale of `now`.
  bool recent(absl::Time now) const {
    return absl::FromUnixNanos(last_at_ns_.load(std::memory_order_relaxed)) + kStale > now;
  }
  // "PING round trip 212ms, usually 87us" (the last and the usual).
  std::string Why() const;

 private:
  // The minimum of each minute, newest at minute_ % size.
  static constexpr int kBuckets = kUsualWindowMinutes;
  absl::Duration Usual() const;
  static size_t Bucket(int64_t minute) {
    return static_cast<size_t>(((minute % kBuckets) + kBuckets) % kBuckets);
  }

  std::array<absl::Duration, kBuckets> minima_ = {};
  int64_t minute_ = -1;  // of the newest bucket; -1: none yet
  int slow_in_a_row_ = 0;
  std::atomic<bool> slow_{false};
  std::atomic<bool> last_slow_{false};
  std::atomic<int64_t> last_us_{0};
  std::atomic<int64_t> last_at_ns_{0};
  std::atomic<int64_t> usual_us_{0};
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_H2_ROUND_TRIPS_H_
