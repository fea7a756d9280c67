// KeyEpochs: the lease that keeps a load which began before a Set or Remove
// from storing its result after it (no resurrection). Memcache at Facebook
// (NSDI 2013) gives each miss a lease that a delete invalidates; this is the
// same idea with fixed memory: keys are striped, a mutation bumps the epoch
// of its key's stripe, and a load stores its result only if its stripe's
// epoch has not moved since the load began.
//
//   const uint64_t epoch = epochs.Begin(key);       // before the load looks anywhere
//   ... the getter runs, or a peer answers ...
//   epochs.StoreIfUnchanged(key, epoch, [&] { store.Set(key, v); });
//
//   epochs.Mutate(key, [&] { store.Remove(key); });  // Set, Remove, Invalidate
//
// A value that did not start loading here (a departing node's hand-off) has
// no epoch to compare: StoreIfQuiet stores it only if its stripe saw no
// mutation for a while, longer than such a value can spend on its way.
//
// Begin, StoreIfUnchanged and Mutate take the stripe's lock, so a mutation
// is atomic with respect to both ends of a load: a load that began before it
// cannot store after it, and one that began after it sees its effect.
//
// A mutation of another key of the same stripe also makes a load skip
// storing (its callers still get the value; the next Get loads again). With
// kStripes stripes and mutations rare next to loads, that is rare too.
//
// Thread-safety: all methods are safe for concurrent use. std::mutex, so
// ThreadSanitizer sees it. `store` and `apply` run under a stripe lock: they
// may take the store's locks and the flight tables' (never the other way
// round), and must not call back into KeyEpochs.

#ifndef LCACHE_SRC_CORE_KEY_EPOCHS_H_
#define LCACHE_SRC_CORE_KEY_EPOCHS_H_

#include <array>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string_view>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lcache/clock.h"

namespace lcache::internal {

class KeyEpochs {
 public:
  // 1024 stripes of one cache line each: 64 KiB per group.
  static constexpr size_t kStripes = 1024;
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::min();

  explicit KeyEpochs(const Clock* clock) : clock_(clock) {}

  // The epoch of `key`'s stripe now: call it before the load looks at the
  // store, the getter or a peer.
  uint64_t Begin(std::string_view key) {
    Stripe& s = StripeOf(key);
    std::lock_guard lock(s.mu);
    return s.epoch;
  }

  // Runs `store` if no mutation of `key`'s stripe happened since `epoch`;
  // returns whether it ran.
  template <typename F>
  bool StoreIfUnchanged(std::string_view key, uint64_t epoch, F&& store) {
    Stripe& s = StripeOf(key);
    std::lock_guard lock(s.mu);
    if (s.epoch != epoch) return false;
    store();
    return true;
  }

  // Bumps the epoch of `key`'s stripe and runs `apply`, as one step.
  template <typename F>
  void Mutate(std::string_view key, F&& apply) {
    Stripe& s = StripeOf(key);
    std::lock_guard lock(s.mu);
    ++s.epoch;
    s.mutated_at_ns = absl::ToUnixNanos(clock_->Now());
    apply();
  }

  // Mutate for every stripe: no load that began before stores its result.
  void MutateAll() {
    const int64_t now = absl::ToUnixNanos(clock_->Now());
    for (Stripe& s : stripes_) {
      std::lock_guard lock(s.mu);
      ++s.epoch;
      s.mutated_at_ns = now;
    }
  }

  // Mutate, where `apply(quiet)` learns whether the stripe had been quiet,
  // with no mutation in the `quiet` before this one: a mutation that carries
  // a value (a SetReplica) keeps it only then, so that two of them crossing
  // on the way cannot leave the older behind.
  template <typename F>
  void MutateNoting(std::string_view key, absl::Duration quiet, F&& apply) {
    Stripe& s = StripeOf(key);
    std::lock_guard lock(s.mu);
    const int64_t now = absl::ToUnixNanos(clock_->Now());
    const bool was_quiet = absl::ToUnixNanos(absl::FromUnixNanos(now) - quiet) >= s.mutated_at_ns;
    ++s.epoch;
    s.mutated_at_ns = now;
    apply(was_quiet);
  }

  // Whether a mutation of `key`'s stripe happened at or after `t`.
  bool MutatedSince(std::string_view key, absl::Time t) {
    Stripe& s = StripeOf(key);
    std::lock_guard lock(s.mu);
    return s.mutated_at_ns != kNever && s.mutated_at_ns >= absl::ToUnixNanos(t);
  }

  // Runs `store` if no mutation of `key`'s stripe happened in the last
  // `quiet`; returns whether it ran.
  template <typename F>
  bool StoreIfQuiet(std::string_view key, absl::Duration quiet, F&& store) {
    Stripe& s = StripeOf(key);
    std::lock_guard lock(s.mu);
    if (absl::ToUnixNanos(clock_->Now() - quiet) < s.mutated_at_ns) return false;
    store();
    return true;
  }

 private:
  struct alignas(64) Stripe {
    std::mutex mu;
    uint64_t epoch = 0;                                        // guarded by mu
    int64_t mutated_at_ns = kNever;                            // guarded by mu
  };
  static_assert(sizeof(Stripe) == 64, "a stripe is one cache line");

  Stripe& StripeOf(std::string_view key) {
    const size_t h = absl::Hash<absl::string_view>{}(absl::string_view(key.data(), key.size()));
    return stripes_[h % kStripes];
  }

  const Clock* const clock_;
  std::array<Stripe, kStripes> stripes_;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_CORE_KEY_EPOCHS_H_
