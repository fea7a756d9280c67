// Outlier ejection: stop calling a peer that keeps failing, or whose link is
// slow, for a while.
//
// groupcache calls the owner of every missed key, however dead: a hung peer
// costs each of its keys a full deadline. With ejection, after
// `after_failures` consecutive failures (IsPeerFailure: unreachable or
// deadline, never an answer such as not-found) the peer is ejected: RingPicker
// stops picking it, so the Group loads its keys locally, at local-load speed.
// After a backoff, one request (the probe) goes to the peer while the others
// keep loading locally; a probe that gets any answer returns the peer to
// service, a probe that fails ejects it again for twice as long. The backoff
// starts at `base_backoff` and doubles with each ejection in a row, up to
// `max_backoff`; the row ends when the peer has stayed back for max_backoff.
//
// Why local loads and not the next owner on the ring: the Group already
// falls back to a local load on any peer error, every node's choice is its
// own (a node that ejects a peer does not know whether the others did), and
// a Go node or a C++ node that has not ejected the peer would route a
// forwarded key straight back to it. Re-routing would give one load per key
// only when every node agrees on the ejection, and would make the next owner
// a second owner of keys it does not own. An ejection is short (seconds,
// until the peer answers again or discovery drops it, which then moves its
// keys to the next owners on every node at once), so N-1 loads of each of
// its keys during that window is the simpler and safer price.
//
// PeerHealth is the state machine of one peer; RingPicker keeps one per peer
// (RingPickerOptions::ejection). Thread-safety: all methods are safe for
// concurrent use. Admit on a healthy peer is one relaxed atomic load; Record
// of a success is one relaxed load (and a store after a failure). The
// transitions take a std::mutex, only on the failure and ejected paths.

#ifndef LCACHE_OUTLIER_EJECTION_H_
#define LCACHE_OUTLIER_EJECTION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "lcache/clock.h"
#include "lcache/peers.h"

namespace lcache {

// Whether a peer call's status says the peer itself failed (unreachable,
// refused, hung past the deadline): UNAVAILABLE or DEADLINE_EXCEEDED. Any
// other status is the peer answering (a value, not-found, a bad key, its
// getter's own error, overload), which proves it alive.
// A DEADLINE_EXCEEDED marked as the caller's (kCallerDeadlinePayload, see
// peers.h) is neither: Record ignores it.
bool IsPeerFailure(const absl::Status& status);

// Whether a peer call's DEADLINE_EXCEEDED is marked as the caller's doing.
bool IsCallerDeadline(const absl::Status& status);

// An ejection or a return, for the owner of the picker to log.
struct EjectionEvent {
  enum class Kind { kEjected, kReturned };
  Kind kind = Kind::kEjected;
  std::string_view address = {};  // valid during the callback only
  // kEjected: how long the peer stays out before the next probe, which
  // ejection in a row this is (1 = the first), whether a failed probe caused
  // it (else `after_failures` consecutive failures), and the last failure.
  absl::Duration backoff = absl::ZeroDuration();
  int streak = 0;
  bool failed_probe = false;
  absl::Status last_error = {};
  // kReturned: how long the peer was out.
  absl::Duration out_for = absl::ZeroDuration();
};

struct EjectionOptions {
  // Consecutive failures that eject a peer; 0 never ejects (the default, as
  // groupcache; lcache-node uses 3).
  int after_failures = 0;
  // The first ejection's length, doubled for each ejection in a row up to
  // max_backoff. REQUIRES: base_backoff > 0 when after_failures > 0.
  absl::Duration base_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(30);  // raised to base_backoff if lower
  // Null means Clock::Real(). Tests pass a ManualClock.
  Clock* clock = nullptr;
  // Called on every ejection and return, on the thread that saw the result,
  // under the peer's transition lock (so events of one peer arrive in
  // order). Must be quick, thread-safe, and not call back into the picker's
  // ejection methods. May be null.
  std::function<void(const EjectionEvent&)> on_event = nullptr;
  // Whether a call answered over a link its transport judges slow
  // (PeerGetter::Slowness: the lean transport's PING round trips far above
  // their usual) counts as a failure: a peer that answers, but slowly, is
  // ejected too, and its keys load locally until its link is back to usual
  // (a probe answered over a link no longer slow returns it). Off by
  // default here; lcache-node turns it on (-eject-slow).
  bool slow_links = false;
};

// Monotonic counters (for logs and /metrics), shared by all the peers of a
// picker, and a gauge.
struct EjectionStats {
  int64_t ejections = 0;  // peers taken out, failed probes included
  int64_t returns = 0;    // peers back after a successful probe
  int64_t probes = 0;     // probe requests sent
  int64_t skipped = 0;    // picks answered "load locally" because the owner was out
  int64_t out_now = 0;    // peers out at the moment of reading (ejected or probing)
};

// The atomics behind EjectionStats (all but out_now). Relaxed: counters only.
struct EjectionCounters {
  std::atomic<int64_t> ejections{0};
  std::atomic<int64_t> returns{0};
  std::atomic<int64_t> probes{0};
  std::atomic<int64_t> skipped{0};

  EjectionStats Read() const;
};

class PeerHealth {
 public:
  enum class Admission {
    kUse,    // healthy: call the peer
    kProbe,  // out, and this request is the probe: call it, then RecordProbe
    kSkip,   // out: do not call it, load locally
  };

  // REQUIRES: counters not null; options.after_failures > 0.
  PeerHealth(std::string address, const EjectionOptions& options,
             std::shared_ptr<EjectionCounters> counters);

  PeerHealth(const PeerHealth&) = delete;
  PeerHealth& operator=(const PeerHealth&) = delete;

  // Whether the next request may go to the peer. At most one kProbe is
  // outstanding at a time; another is granted only if the first has not
  // reported within max_backoff (a caller that never called the peer).
  Admission Admit() {
    if (state_.load(std::memory_order_relaxed) == kHealthy) return Admission::kUse;
    return AdmitSlow();
  }

  // The epoch to pass to Record: read it when the call starts. It changes
  // on every ejection and return, so results of calls that started before
  // one are not counted after it (a peer that just came back is not ejected
  // again by the late failures of calls sent before it left).
  uint64_t epoch() const { return epoch_failures_.load(std::memory_order_acquire) >> 32; }

  // The result of a call admitted with kUse, started in `epoch`.
  void Record(const absl::Status& status, uint64_t epoch);
  // The result of the call admitted with kProbe.
  void RecordProbe(const absl::Status& status);

  // Out of service (ejected, or ejected with a probe in flight).
  bool out() const { return state_.load(std::memory_order_relaxed) != kHealthy; }
  const std::string& address() const { return address_; }

 private:
  enum State : int { kHealthy, kEjected, kProbing };

  Admission AdmitSlow();
  // REQUIRES: mu_ held.
  void Eject(absl::Time now, const absl::Status& error, bool failed_probe);
  void Return(absl::Time now);
  void NextEpoch();
  absl::Duration Backoff(int streak) const;

  const std::string address_;
  const int after_failures_;
  const absl::Duration base_backoff_;
  const absl::Duration max_backoff_;
  Clock* const clock_;
  const std::function<void(const EjectionEvent&)> on_event_;
  const std::shared_ptr<EjectionCounters> counters_;

  // Written under mu_, read without it on the fast paths.
  std::atomic<int> state_{kHealthy};
  // The epoch (high 32 bits) and the consecutive failures counted in it (low
  // 32 bits; reset by any answer), in one word so that a transition resets
  // the count and moves the epoch at once, and a late failure of an old
  // epoch can never land in the new count.
  std::atomic<uint64_t> epoch_failures_{0};
  // kEjected: when the probe may go (Unix ns); kProbing: when another probe
  // may go if the first never reports.
  std::atomic<int64_t> until_ns_{0};

  std::mutex mu_;
  int streak_ = 0;                                 // GUARDED_BY(mu_)
  absl::Time out_since_ = absl::InfinitePast();    // GUARDED_BY(mu_)
  absl::Time returned_at_ = absl::InfinitePast();  // GUARDED_BY(mu_)
};

}  // namespace lcache

#endif  // LCACHE_OUTLIER_EJECTION_H_
