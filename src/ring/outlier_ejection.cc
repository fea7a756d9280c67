#include "lcache/outlier_ejection.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace lcache {

bool IsPeerFailure(const absl::Status& status) {
  if (IsCallerDeadline(status)) return false;
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

bool IsCallerDeadline(const absl::Status& status) {
  return absl::IsDeadlineExceeded(status) &&
         status.GetPayload(kCallerDeadlinePayload).has_value();
}


EjectionStats EjectionCounters::Read() const {
  return {
      .ejections = ejections.load(std::memory_order_relaxed),
      .returns = returns.load(std::memory_order_relaxed),
      .probes = probes.load(std::memory_order_relaxed),
      .skipped = skipped.load(std::memory_order_relaxed),
      .out_now = 0,
  };
}

PeerHealth::PeerHealth(std::string address, const EjectionOptions& options,
                       std::shared_ptr<EjectionCounters> counters)
    : address_(std::move(address)),
      after_failures_(options.after_failures),
      base_backoff_(options.base_backoff),
      max_backoff_(std::max(options.max_backoff, options.base_backoff)),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      on_event_(options.on_event),
      counters_(std::move(counters)) {
  assert(counters_ != nullptr);
  assert(after_failures_ > 0);
  assert(base_backoff_ > absl::ZeroDuration());
}

PeerHealth::Admission PeerHealth::AdmitSlow() {
  const absl::Time now = clock_->Now();
  const int64_t now_ns = absl::ToUnixNanos(now);
  // Lock-free while the backoff runs: every request for the ejected peer's
  // keys comes through here, and each then pays a local load anyway.
  const int state = state_.load(std::memory_order_acquire);
  if (state == kHealthy) return Admission::kUse;
  if (now_ns < until_ns_.load(std::memory_order_acquire)) {
    counters_->skipped.fetch_add(1, std::memory_order_relaxed);
    return Admission::kSkip;
  }
  std::lock_guard lock(mu_);
  const int locked_state = state_.load(std::memory_order_relaxed);
  if (locked_state == kHealthy) return Admission::kUse;
  if (now_ns < until_ns_.load(std::memory_order_relaxed)) {
    counters_->skipped.fetch_add(1, std::memory_order_relaxed);
    return Admission::kSkip;  // another thread took the probe just now
  }
  // The backoff is over (kEjected), or a probe never reported (kProbing):
  // this request is the probe. The lease bounds how long a lost probe can
  // keep the peer out.
  state_.store(kProbing, std::memory_order_release);
  until_ns_.store(absl::ToUnixNanos(now + max_backoff_), std::memory_order_release);
  counters_->probes.fetch_add(1, std::memory_order_relaxed);
  return Admission::kProbe;
}

namespace {
constexpr uint64_t kFailureMask = 0xffffffff;
}  // namespace

void PeerHealth::Record(const absl::Status& status, uint64_t epoch) {
  // Cut short by its caller, or called off: the call proves neither life
  // nor failure.
  if (IsCallerDeadline(status) || absl::IsCancelled(status)) return;
  uint64_t current = epoch_failures_.load(std::memory_order_relaxed);
  if (!IsPeerFailure(status)) {
    // Any answer proves the peer alive. Read before writing, so that the
    // healthy path does not write a shared cache line on every call; a lost
    // race with a failure or a transition is harmless.
    if ((current & kFailureMask) != 0 && (current >> 32) == epoch) {
      epoch_failures_.compare_exchange_strong(current, current & ~kFailureMask,
                                              std::memory_order_acq_rel);
    }
    return;
  }
  uint64_t next;
  do {
    if ((current >> 32) != epoch) return;  // a call from before a transition
    next = current + 1;
  } while (!epoch_failures_.compare_exchange_weak(current, next, std::memory_order_acq_rel));
  if ((next & kFailureMask) < static_cast<uint64_t>(after_failures_)) return;
  std::lock_guard lock(mu_);
  // Only the first thread over the threshold in this epoch ejects; the
  // others find the epoch moved on.
  if (state_.load(std::memory_order_relaxed) != kHealthy ||
      (epoch_failures_.load(std::memory_order_relaxed) >> 32) != epoch) {
    return;
  }
  Eject(clock_->Now(), status, /*failed_probe=*/false);
}

void PeerHealth::NextEpoch() {
  const uint64_t epoch = epoch_failures_.load(std::memory_order_relaxed) >> 32;
  epoch_failures_.store((epoch + 1) << 32, std::memory_order_release);
}

void PeerHealth::RecordProbe(const absl::Status& status) {
  std::lock_guard lock(mu_);
  // A probe whose lease ran out may report after its successor did.
  if (state_.load(std::memory_order_relaxed) != kProbing) return;
  // A probe cut short by its caller did not show the peer alive: it counts
  // as failed (the cautious reading; the peer stays out one more backoff).
  if (IsPeerFailure(status) || IsCallerDeadline(status)) {
    Eject(clock_->Now(), status, /*failed_probe=*/true);
  } else {
    Return(clock_->Now());
  }
}

absl::Duration PeerHealth::Backoff(int streak) const {
  absl::Duration backoff = base_backoff_;
  for (int i = 1; i < streak && backoff < max_backoff_; ++i) backoff *= 2;
  return std::min(backoff, max_backoff_);
}

void PeerHealth::Eject(absl::Time now, const absl::Status& error, bool failed_probe) {
  if (failed_probe) {
    ++streak_;
  } else {
    // Ejected again soon after coming back: a flapping peer, so the row
    // goes on and the backoff keeps growing.
    streak_ = now - returned_at_ < max_backoff_ ? streak_ + 1 : 1;
    out_since_ = now;
  }
  const absl::Duration backoff = Backoff(streak_);
  until_ns_.store(absl::ToUnixNanos(now + backoff), std::memory_order_release);
  NextEpoch();
  // Counted before the state is published: whoever sees the peer out sees
  // the ejection counted.
  counters_->ejections.fetch_add(1, std::memory_order_relaxed);
  state_.store(kEjected, std::memory_order_release);
  if (on_event_) {
    on_event_({
        .kind = EjectionEvent::Kind::kEjected,
        .address = address_,
        .backoff = backoff,
        .streak = streak_,
        .failed_probe = failed_probe,
        .last_error = error,
        .out_for = absl::ZeroDuration(),
    });
  }
}

void PeerHealth::Return(absl::Time now) {
  returned_at_ = now;
  NextEpoch();
  counters_->returns.fetch_add(1, std::memory_order_relaxed);
  state_.store(kHealthy, std::memory_order_release);
  if (on_event_) {
    on_event_({
        .kind = EjectionEvent::Kind::kReturned,
        .address = address_,
        .backoff = absl::ZeroDuration(),
        .streak = streak_,
        .failed_probe = false,
        .last_error = absl::OkStatus(),
        .out_for = now - out_since_,
    });
  }
}

}  // namespace lcache
