#include "lcache/singleflight.h"

#include <condition_variable>
#include <exception>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"

namespace lcache {

// One execution of fn, shared by the caller that runs it (the leader) and
// every caller that finds it in flight (the waiters). It has its own mutex so
// that waking a crowd of waiters never contends with callers of other keys.
struct SingleFlight::Call {
  std::mutex mu;
  std::condition_variable cv;
  bool done ABSL_GUARDED_BY(mu) = false;
  // Written by the leader before it sets `done` and never again, so a caller
  // that has seen `done` reads them without holding mu.
  Result result;
  std::exception_ptr error;
};

// fn must not call Do for the same key on the same SingleFlight: it would
// wait for its own flight.
SingleFlight::Outcome SingleFlight::Do(std::string_view key, const std::function<Result()>& fn) {
  // The map's transparent hash takes absl::string_view, which in Debian's
  // abseil is its own type, not an alias that std::string_view converts to.
  const absl::string_view k(key.data(), key.size());
  std::shared_ptr<Call> call;
  bool leader = false;
  {
    std::lock_guard lock(mu_);
    // Heterogeneous lookup: the key string is built only when this caller
    // inserts it, never for a waiter.
    auto [it, inserted] = calls_.try_emplace(k);
    if (inserted) it->second = std::make_shared<Call>();
    call = it->second;
    leader = inserted;
  }

  if (!leader) {
    std::unique_lock lock(call->mu);
    call->cv.wait(lock, [&call] { return call->done; });
  } else {
    // No lock is held while fn runs: it may be slow (a peer RPC, a load) and
    // may start flights for other keys.
    try {
      call->result = fn();
    } catch (...) {
      // Captured rather than let through, so that the key is released and the
      // waiters woken; every caller rethrows it below.
      call->error = std::current_exception();
    }

    // The key leaves the map before anyone wakes, so a caller that arrives
    // from now on runs fn anew instead of getting this result. The node is
    // destroyed after the unlock: freeing the key string needs no lock.
    decltype(calls_)::node_type node;
    {
      std::lock_guard lock(mu_);
      node = calls_.extract(k);
    }
    {
      std::lock_guard lock(call->mu);
      call->done = true;
    }
    call->cv.notify_all();
  }

  if (call->error) std::rethrow_exception(call->error);
  return {call->result, !leader};
}

size_t SingleFlight::InFlight() const {
  std::lock_guard lock(mu_);
  return calls_.size();
}

}  // namespace lcache
