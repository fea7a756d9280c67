// Flights: the completion-based singleflight under Group::GetAsync (and so
// under Group::Get). A flight is one load of one key; every caller that
// asks for the key while it is in flight joins it as a waiter, and the
// leader (the caller that started it) ends it with one result that every
// waiter receives. Nobody blocks here: a waiter is a callback.
//
// A waiter stops caring when its deadline passes or its `cancelled` flag is
// set (a stream reset, a connection closed), or, for a flight that waits on
// another flight (a Group's remote flight falling back to its local one),
// when every waiter of that flight has stopped caring. A load that has not
// started when its flight is abandoned is not worth starting (Abandoned).
//
// Thread-safety: all methods are safe for concurrent use. Uses std
// synchronisation only, so ThreadSanitizer sees it.

#ifndef LCACHE_SRC_CORE_FLIGHTS_H_
#define LCACHE_SRC_CORE_FLIGHTS_H_

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/byte_view.h"
#include "lcache/clock.h"
#include "lcache/latency_histogram.h"

namespace lcache::internal {

class Flight;

struct FlightWaiter {
  // Runs once, when the flight ends, on the thread that ends it; must not
  // block or throw.
  std::function<void(const absl::StatusOr<ExpiringValue>&)> done;
  absl::Time deadline = absl::InfiniteFuture();
  std::shared_ptr<const std::atomic<bool>> cancelled = nullptr;
  // Set when this waiter is itself a flight waiting on this one.
  std::shared_ptr<Flight> parent = nullptr;
  // When the waiter's miss began: Finish records its wait in the table's
  // latency histogram (if it has one). InfinitePast: not timed.
  absl::Time started = absl::InfinitePast();
};

// One load of one key and its waiters.
class Flight {
 public:
  explicit Flight(std::string_view key) : key_(key) {}

  // True when every waiter has stopped caring at `now` (see the file
  // comment); `*status` then says why: CANCELLED if any waiter was
  // cancelled, else DEADLINE_EXCEEDED.
  bool Abandoned(absl::Time now, absl::Status* status) const;

  // The way to call off the step in progress (a peer call's Cancel), until
  // ClearCancel. If every waiter has already gone, it is called at once.
  void SetCancel(std::function<void()> cancel);
  void ClearCancel();
  // Calls the flight off if every waiter has gone at `now`: runs its cancel,
  // once, outside the lock. The step's answer then finds called_off().
  void CallOffIfAbandoned(absl::Time now);
  bool called_off() const;

  const std::string& key() const { return key_; }

 private:
  friend class Flights;

  const std::string key_;
  mutable std::mutex mu_;
  std::vector<FlightWaiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::function<void()> cancel_ ABSL_GUARDED_BY(mu_);
  bool called_off_ ABSL_GUARDED_BY(mu_) = false;
};

// The flights of one table (a Group has two), by key.
class Flights {
 public:
  using Result = absl::StatusOr<ExpiringValue>;

  // `latency` and `clock` (both optional, not owned) time the waiters that
  // say when they started.
  explicit Flights(LatencyHistogram* latency = nullptr, const Clock* clock = nullptr)
      : latency_(latency), clock_(clock) {}
  Flights(const Flights&) = delete;
  Flights& operator=(const Flights&) = delete;

  // Adds `waiter` to the flight of `key`, starting one if there is none.
  // Returns the flight when the caller started it and so leads it: it must
  // load and call Finish exactly once. Returns null for a waiter that joined
  // a flight already running.
  std::shared_ptr<Flight> Join(std::string_view key, FlightWaiter waiter);

  // Ends `flight`: it leaves the table first (a Join from now on starts a new
  // flight instead of getting this result), then every waiter's `done` runs
  // with `result`, on this thread, in the order they joined.
  void Finish(const std::shared_ptr<Flight>& flight, const Result& result);

  // The flight of `key`, or null.
  std::shared_ptr<Flight> Find(std::string_view key);

  // Takes the flight of `key`, if any, out of the table: it goes on for the
  // waiters it has, and a Join from now on starts a new flight. For a Set or
  // Remove, after which nobody may receive what a flight began loading
  // before it.
  void Detach(std::string_view key);

  // Number of keys with a flight.
  size_t InFlight() const;

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable std::mutex mu;
    absl::flat_hash_map<std::string, std::shared_ptr<Flight>> flights ABSL_GUARDED_BY(mu);
  };
  Shard& ShardOf(std::string_view key);

  LatencyHistogram* const latency_;
  const Clock* const clock_;
  std::array<Shard, kShards> shards_;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_CORE_FLIGHTS_H_
