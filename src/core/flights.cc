#include "core/flights.h"

#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"

namespace lcache::internal {

Flights::Shard& Flights::ShardOf(std::string_view key) {
  return shards_[absl::Hash<absl::string_view>{}(absl::string_view(key.data(), key.size())) % kShards];
}

std::shared_ptr<Flight> Flights::Join(std::string_view key, FlightWaiter waiter) {
  Shard& shard = ShardOf(key);
  // The map's transparent hash takes absl::string_view, which in Debian's
  // abseil is its own type, not an alias that std::string_view converts to.
  const absl::string_view k(key.data(), key.size());
  std::lock_guard lock(shard.mu);
  auto [it, inserted] = shard.flights.try_emplace(k);
  if (inserted) it->second = std::make_shared<Flight>(key);
  Flight& flight = *it->second;
  // Shard, then flight: the only place both are held, so no order can invert.
  std::lock_guard flight_lock(flight.mu_);
  flight.waiters_.push_back(std::move(waiter));
  return inserted ? it->second : nullptr;
}

void Flights::Finish(const std::shared_ptr<Flight>& flight, const Result& result) {
  Shard& shard = ShardOf(flight->key());
  decltype(shard.flights)::node_type node;  // freed after the unlock
  {
    std::lock_guard lock(shard.mu);
    auto it = shard.flights.find(absl::string_view(flight->key()));
    if (it != shard.flights.end() && it->second == flight) node = shard.flights.extract(it);
  }
  // Out of the table, no waiter can join any more: the list is final.
  std::vector<FlightWaiter> waiters;
  {
    std::lock_guard lock(flight->mu_);
    waiters.swap(flight->waiters_);
  }
  const absl::Time now =
      latency_ != nullptr && clock_ != nullptr ? clock_->Now() : absl::InfinitePast();
  for (FlightWaiter& w : waiters) {
    if (w.started != absl::InfinitePast() && now != absl::InfinitePast()) {
      latency_->Record(now - w.started);
    }
    w.done(result);
  }
}

bool Flight::Abandoned(absl::Time now, absl::Status* status) const {
  bool any_cancelled = false;
  std::vector<std::shared_ptr<Flight>> parents;
  {
    std::lock_guard lock(mu_);
    if (waiters_.empty()) return false;  // finished: nothing to drop
    for (const FlightWaiter& w : waiters_) {
      if (w.cancelled != nullptr && w.cancelled->load(std::memory_order_relaxed)) {
        any_cancelled = true;
      } else if (w.parent != nullptr) {
        parents.push_back(w.parent);
      } else if (w.deadline > now) {
        return false;  // someone still waits
      }
    }
  }
  // Outside our lock: a parent's lock is never taken under a child's.
  for (const std::shared_ptr<Flight>& parent : parents) {
    absl::Status why;
    if (!parent->Abandoned(now, &why)) return false;
    if (absl::IsCancelled(why)) any_cancelled = true;
  }
  *status = any_cancelled
                ? absl::CancelledError("lcache: every caller left before the load started")
                : absl::DeadlineExceededError(
                      "lcache: every caller's deadline passed before the load started");
  return true;
}

std::shared_ptr<Flight> Flights::Find(std::string_view key) {
  Shard& shard = ShardOf(key);
  std::lock_guard lock(shard.mu);
  auto it = shard.flights.find(absl::string_view(key.data(), key.size()));
  return it == shard.flights.end() ? nullptr : it->second;
}

void Flights::Detach(std::string_view key) {
  Shard& shard = ShardOf(key);
  decltype(shard.flights)::node_type node;  // freed after the unlock
  std::lock_guard lock(shard.mu);
  auto it = shard.flights.find(absl::string_view(key.data(), key.size()));
  if (it != shard.flights.end()) node = shard.flights.extract(it);
}

void Flight::SetCancel(std::function<void()> cancel) {
  {
    std::lock_guard lock(mu_);
    if (waiters_.empty()) return;  // finished already
    cancel_ = std::move(cancel);
  }
  // A caller that left before the cancel was there found nothing to call off.
  CallOffIfAbandoned(absl::Now());
}

void Flight::ClearCancel() {
  std::function<void()> cancel;  // destroyed outside the lock
  std::lock_guard lock(mu_);
  cancel.swap(cancel_);
}

void Flight::CallOffIfAbandoned(absl::Time now) {
  absl::Status why;
  if (!Abandoned(now, &why)) return;
  std::function<void()> cancel;
  {
    std::lock_guard lock(mu_);
    if (called_off_ || cancel_ == nullptr) return;
    called_off_ = true;
    cancel.swap(cancel_);
  }
  cancel();
}

bool Flight::called_off() const {
  std::lock_guard lock(mu_);
  return called_off_;
}

size_t Flights::InFlight() const {
  size_t n = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    n += shard.flights.size();
  }
  return n;
}

}  // namespace lcache::internal
