// What the files that implement Group (group.cc, group_mutations.cc,
// group_handoff.cc, group_replicas.cc) share:
// its counters (GroupStats), the deadline of a call to a peer, and the set
// of peers that take no replicas.

#ifndef LCACHE_SRC_CORE_GROUP_INTERNAL_H_
#define LCACHE_SRC_CORE_GROUP_INTERNAL_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "lcache/group.h"
#include "store/thread_counters.h"

namespace lcache {

// Per-group counters, striped by thread so that two cores counting hits do
// not fight over one cache line, and added without a read-modify-write
// while at most 16 threads count (thread_counters.h). Reads sum the stripes.
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
    kReplicaInvalidationsRetried,
    kNumFields
  };

  void Add(Field f, int64_t n = 1) { counters_.Add(f, n); }
  int64_t Sum(Field f) const { return counters_.Sum(f); }

 private:
  internal::ThreadCounters<kNumFields> counters_;
};

namespace internal {

// The invalidations replica holders did not acknowledge, by holder, to be
// sent again (Group::RetryInvalidations). Bounded: at most kMaxKeys keys in
// all (more are not kept, and counted), and a holder off the ring for
// kForgetAfter is forgotten (a node that comes back after that long has
// restarted, or is told by no one). Safe for concurrent use.
class PendingInvalidations {
 public:
  static constexpr size_t kMaxKeys = 100000;
  static constexpr absl::Duration kForgetAfter = absl::Minutes(10);

  // When full, the key is not kept, and counted in dropped().
  void Add(std::string_view address, std::string_view key) {
    std::lock_guard lock(mu_);
    if (total_ >= kMaxKeys) {
      ++dropped_;
      return;
    }
    Holder& h = holders_[std::string(address)];
    if (h.keys.emplace(key).second) ++total_;
  }
  // Takes every key of every holder.
  std::map<std::string, std::set<std::string, std::less<>>, std::less<>> Take() {
    std::lock_guard lock(mu_);
    std::map<std::string, std::set<std::string, std::less<>>, std::less<>> out;
    for (auto& [address, h] : holders_) {
      if (!h.keys.empty()) out.emplace(address, std::move(h.keys));
      h.keys.clear();
    }
    total_ = 0;
    return out;
  }
  // Notes that `address` is not on the ring at `now`; forgets its keys
  // once it has been away kForgetAfter. Returns whether it forgot them.
  bool Absent(std::string_view address, absl::Time now) {
    std::lock_guard lock(mu_);
    auto it = holders_.find(address);
    if (it == holders_.end()) return true;
    if (it->second.absent_since == absl::InfiniteFuture()) it->second.absent_since = now;
    if (now - it->second.absent_since < kForgetAfter) return false;
    total_ -= it->second.keys.size();
    holders_.erase(it);
    return true;
  }
  void Present(std::string_view address) {
    std::lock_guard lock(mu_);
    if (auto it = holders_.find(address); it != holders_.end()) {
      it->second.absent_since = absl::InfiniteFuture();
    }
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return total_;
  }
  int64_t dropped() const {
    std::lock_guard lock(mu_);
    return dropped_;
  }

 private:
  struct Holder {
    std::set<std::string, std::less<>> keys;
    absl::Time absent_since = absl::InfiniteFuture();
  };
  mutable std::mutex mu_;
  std::map<std::string, Holder, std::less<>> holders_;  // GUARDED_BY(mu_)
  size_t total_ = 0;                                    // GUARDED_BY(mu_)
  int64_t dropped_ = 0;                                 // GUARDED_BY(mu_)
};

// Bounds the calls a blocking walk (Group::Rereplicate,
// RetryInvalidations) has in flight, and waits for the last to end. Shared
// with the calls' callbacks, which may run on any thread.
class CallWindow {
 public:
  explicit CallWindow(int max_in_flight) : max_(std::max(1, max_in_flight)) {}

  // Waits for room for one more call; false if `deadline` came first.
  bool Enter(absl::Time deadline) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_until(lock, absl::ToChronoTime(deadline), [&] { return in_flight_ < max_; })) {
      return false;
    }
    ++in_flight_;
    return true;
  }
  // A call ended.
  void Leave() {
    {
      std::lock_guard lock(mu_);
      --in_flight_;
    }
    cv_.notify_all();
  }
  // Every call ends by its deadline or its transport's timeout, so this
  // wait ends.
  void AwaitEmpty() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ == 0; });
  }

 private:
  const int max_;
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;  // GUARDED_BY(mu_)
};

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
