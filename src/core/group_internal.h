// What the files that implement Group (group.cc, group_mutations.cc,
// group_handoff.cc, group_replicas.cc) share:
// its counters (GroupStats), the deadline of a call to a peer, and the set
// of peers that take no replicas.

#ifndef LCACHE_SRC_CORE_GROUP_INTERNAL_H_
#define LCACHE_SRC_CORE_GROUP_INTERNAL_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "lcache/group.h"

namespace lcache {

// Per-group counters, striped by thread so that two cores counting hits do
// not fight over one cache line. Reads sum the stripes.
class Group::Counters {
 public:
  enum Field {
    kCacheHits,
    kHotHits,
    kHotKeeps,
    kRejected,  // invalid keys
    kPeerLoads,
    kPeerErrors,
    kLoads,
    kLoadsDeduped,
    kLocalLoads,
    kLocalLoadErrs,
    kServerRequests,
    kLoadsCancelled,
    kSets,
    kRemoves,
    kInvalidationsSent,
    kInvalidationsUnacked,
    kInvalidationsReceived,
    kLoadsDiscarded,
    kPeekHits,
    kPeekMisses,
    kPeeksServed,
    kHandoffEntriesSent,
    kHandoffBytesSent,
    kHandoffsKept,
    kHandoffsRefused,
    kReplicasPushed,
    kReplicaBytesPushed,
    kReplicaPushFailures,
    kReplicasKept,
    kReplicasRefused,
    kReplicaHits,
    kStandInCalls,
    kReplicasPromoted,
    kReplicaResyncs,
    kNumFields
  };

  void Add(Field f, int64_t n = 1) {
    stripes_[ThreadStripe()].v[f].fetch_add(n, std::memory_order_relaxed);
  }

  int64_t Sum(Field f) const {
    int64_t n = 0;
    for (const Stripe& s : stripes_) n += s.v[f].load(std::memory_order_relaxed);
    return n;
  }

 private:
  static constexpr size_t kStripes = 16;

  struct alignas(64) Stripe {
    std::array<std::atomic<int64_t>, kNumFields> v{};
  };

  static size_t ThreadStripe() {
    static std::atomic<size_t> next{0};
    thread_local const size_t stripe = next.fetch_add(1, std::memory_order_relaxed) % kStripes;
    return stripe;
  }

  std::array<Stripe, kStripes> stripes_;
};

namespace internal {

// A set of peer addresses, safe for concurrent use: the peers that do not
// take replicas. Read once per push, which is once per load, not per hit.
class PeerSet {
 public:
  bool Contains(std::string_view address) const {
    std::lock_guard lock(mu_);
    return addresses_.contains(address);
  }
  void Insert(std::string_view address) {
    std::lock_guard lock(mu_);
    addresses_.emplace(address);
  }

 private:
  mutable std::mutex mu_;
  std::set<std::string, std::less<>> addresses_;
};

// The deadline of a call to a peer made for a caller whose deadline is
// `caller`: a quarter of the time left (at most 250 ms) stays for what
// follows it (a local fallback, the answer's way back). The transport also
// caps the call by its own timeout.
absl::Time PeerCallDeadline(absl::Time now, absl::Time caller);

}  // namespace internal
}  // namespace lcache

#endif  // LCACHE_SRC_CORE_GROUP_INTERNAL_H_
