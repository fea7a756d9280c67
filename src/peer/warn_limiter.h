// Warnings about hostile or broken clients, rate-limited: an attack makes
// thousands of the same event a second, and a line for each would fill the
// disk and hide everything else. Each kind of event is said at most once per
// `every`, with how many happened since its last line.

#ifndef LCACHE_PEER_WARN_LIMITER_H_
#define LCACHE_PEER_WARN_LIMITER_H_

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace lcache::internal {

class WarnLimiter {
 public:
  enum Kind {
    kConnectionRefused,
    kAcceptFailed,
    kIdleClosed,
    kRequestTimedOut,
    kBufferFull,
    kTlsFailed,
    kKinds
  };

  WarnLimiter(std::function<void(const std::string&)> warn, absl::Duration every)
      : warn_(std::move(warn)), every_(every) {}

  // Counts one event; `what` is called to make the line only when one is said.
  template <typename What>
  void Count(Kind kind, What&& what) {
    if (warn_ == nullptr) return;
    const absl::Time now = absl::Now();
    uint64_t count = 0;
    {
      std::lock_guard lock(mu_);
      State& s = states_[kind];
      ++s.since_last;
      if (now - s.last < every_) return;
      s.last = now;
      count = s.since_last;
      s.since_last = 0;
    }
    std::string line = what();
    if (count > 1) absl::StrAppend(&line, " (", count, " times since the last such line)");
    warn_(line);
  }

 private:
  struct State {
    absl::Time last = absl::InfinitePast();
    uint64_t since_last = 0;
  };
  const std::function<void(const std::string&)> warn_;
  const absl::Duration every_;
  std::mutex mu_;
  std::array<State, kKinds> states_;
};

}  // namespace lcache::internal

#endif  // LCACHE_PEER_WARN_LIMITER_H_
