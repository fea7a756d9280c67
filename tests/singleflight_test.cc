#include "lcache/singleflight.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "lcache/byte_view.h"

namespace lcache {
namespace {

using ::testing::StrEq;
using ::testing::ThrowsMessage;
using Result = SingleFlight::Result;
using Outcome = SingleFlight::Outcome;

// Long enough that only a deadlock, never a slow ThreadSanitizer run, misses
// it: it turns a hang into a failure. The tests take milliseconds.
constexpr std::chrono::seconds kTimeout(60);

}  // namespace

// Whether a caller has joined a flight is visible only inside SingleFlight,
// which befriends this test peer. It knows singleflight.cc: the map and the
// running leader hold one reference each to the Call, and each waiter takes
// one more under mu_ before it blocks.
class SingleFlightTestPeer {
 public:
  // How many callers wait on the call in flight for `key`.
  static size_t WaitersOn(SingleFlight& flight, std::string_view key) {
    std::lock_guard lock(flight.mu_);
    auto it = flight.calls_.find(absl::string_view(key.data(), key.size()));
    if (it == flight.calls_.end()) return 0;
    return static_cast<size_t>(it->second.use_count()) - 2;
  }
};

namespace {

size_t WaitersOn(SingleFlight& flight, std::string_view key) {
  return SingleFlightTestPeer::WaitersOn(flight, key);
}

// Polls `done` until it holds; false if it still does not at the timeout.
// Polling is the only way to wait for WaitersOn, which nothing signals.
bool Eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// A one-shot event. (absl::Notification would do, but Debian's abseil is not
// built with ThreadSanitizer, which would then miss its synchronisation.)
class Event {
 public:
  void Notify() {
    {
      std::lock_guard lock(mu_);
      notified_ = true;
    }
    cv_.notify_all();
  }

  // False if the event had not happened by the timeout.
  [[nodiscard]] bool Wait() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kTimeout, [this] { return notified_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool notified_ = false;
};

// What a test shares with its callers. Callers hold it by shared_ptr, so that
// callers abandoned at a missed deadline (see Callers) never outlive it.
struct Shared {
  // The start of a fn that keeps its flight open until the test releases it.
  void Hold() {
    fn_runs.fetch_add(1);
    fn_entered.Notify();
    if (!release.Wait()) ADD_FAILURE() << "fn was never released";
  }

  SingleFlight flight;
  std::atomic<int> fn_runs{0};
  Event fn_entered;
  Event release;
};

// Callers of Do, each on its own thread. A std::async future joins its thread
// when destroyed, which would turn a deadlocked SingleFlight into a hung test
// binary; callers still blocked at the deadline are abandoned instead.
class Callers {
 public:
  Callers() = default;
  Callers(const Callers&) = delete;
  Callers& operator=(const Callers&) = delete;
  ~Callers() {
    // Leaked on purpose: destroying the futures would wait for the callers.
    if (!joined_) static_cast<void>(new auto(std::move(outcomes_)));
  }

  void Start(std::function<Outcome()> caller) {
    outcomes_.push_back(std::async(std::launch::async, std::move(caller)));
  }

  // Waits for every caller to return or throw; false if one was still
  // running at the timeout.
  [[nodiscard]] bool Join() {
    const auto deadline = std::chrono::steady_clock::now() + kTimeout;
    for (auto& outcome : outcomes_) {
      if (outcome.wait_until(deadline) != std::future_status::ready) return false;
    }
    joined_ = true;
    return true;
  }

  std::vector<std::future<Outcome>>& outcomes() { return outcomes_; }

 private:
  std::vector<std::future<Outcome>> outcomes_;
  bool joined_ = false;
};

// Every test that holds a flight open releases it only after all its callers
// have joined (WaitersOn), never after a sleep: a caller that arrived after
// the flight ended would rightly run fn again, and "fn ran once" would then
// depend on timing.

TEST(SingleFlightTest, ConcurrentCallersShareOneRun) {
  constexpr int kCallers = 64;
  auto s = std::make_shared<Shared>();
  auto saw_key_in_flight = std::make_shared<std::atomic<int>>(0);
  Callers callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.Start([s, saw_key_in_flight] {
      Outcome outcome = s->flight.Do("key", [&s]() -> Result {
        s->Hold();
        return ByteView::Copy("value");
      });
      // The key leaves the map before any caller wakes.
      if (s->flight.InFlight() != 0) saw_key_in_flight->fetch_add(1);
      return outcome;
    });
  }

  ASSERT_TRUE(s->fn_entered.Wait());
  EXPECT_TRUE(Eventually([&s] { return WaitersOn(s->flight, "key") == kCallers - 1; }))
      << WaitersOn(s->flight, "key") << " of " << kCallers - 1 << " callers joined";
  s->release.Notify();
  ASSERT_TRUE(callers.Join());

  int leaders = 0;
  for (auto& future : callers.outcomes()) {
    Outcome outcome = future.get();
    ASSERT_TRUE(outcome.result.ok()) << outcome.result.status();
    EXPECT_EQ(outcome.result->value.view(), "value");
    if (!outcome.shared) ++leaders;
  }
  EXPECT_EQ(s->fn_runs.load(), 1);
  EXPECT_EQ(leaders, 1);
  EXPECT_EQ(saw_key_in_flight->load(), 0);
  EXPECT_EQ(s->flight.InFlight(), 0u);
}

TEST(SingleFlightTest, ErrorIsSharedByAllCallers) {
  constexpr int kCallers = 16;
  const absl::Status error = absl::UnavailableError("peer 10.0.0.7:9001 unreachable");
  auto s = std::make_shared<Shared>();
  Callers callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.Start([s, error] {
      return s->flight.Do("key", [&]() -> Result {
        s->Hold();
        return error;
      });
    });
  }

  ASSERT_TRUE(s->fn_entered.Wait());
  EXPECT_TRUE(Eventually([&s] { return WaitersOn(s->flight, "key") == kCallers - 1; }));
  s->release.Notify();
  ASSERT_TRUE(callers.Join());

  int leaders = 0;
  for (auto& future : callers.outcomes()) {
    Outcome outcome = future.get();
    EXPECT_EQ(outcome.result.status(), error);  // code and message
    if (!outcome.shared) ++leaders;
  }
  EXPECT_EQ(s->fn_runs.load(), 1);
  EXPECT_EQ(leaders, 1);
  EXPECT_EQ(s->flight.InFlight(), 0u);
}

TEST(SingleFlightTest, ExceptionReachesEveryCallerAndReleasesKey) {
  constexpr int kWaiters = 16;
  auto s = std::make_shared<Shared>();
  auto throwing_fn = [s]() -> Result {
    s->Hold();
    throw std::runtime_error("loader crashed");
  };
  Callers callers;
  callers.Start([s, throwing_fn] { return s->flight.Do("key", throwing_fn); });
  ASSERT_TRUE(s->fn_entered.Wait());
  for (int i = 0; i < kWaiters; ++i) {
    callers.Start([s, throwing_fn] { return s->flight.Do("key", throwing_fn); });
  }
  EXPECT_TRUE(Eventually([&s] { return WaitersOn(s->flight, "key") == kWaiters; }));
  s->release.Notify();
  // A caller that never returns is the groupcache bug this guards against.
  ASSERT_TRUE(callers.Join()) << "a caller is stuck after fn threw";

  for (auto& future : callers.outcomes()) {
    EXPECT_THAT([&future] { future.get(); },
                ThrowsMessage<std::runtime_error>(StrEq("loader crashed")));
  }
  EXPECT_EQ(s->fn_runs.load(), 1);
  EXPECT_EQ(s->flight.InFlight(), 0u);

  // The key is free again: the next call runs its fn.
  Outcome next = s->flight.Do("key", [] { return Result(ByteView::Copy("recovered")); });
  ASSERT_TRUE(next.result.ok()) << next.result.status();
  EXPECT_EQ(next.result->value.view(), "recovered");
  EXPECT_FALSE(next.shared);
}

TEST(SingleFlightTest, DifferentKeysRunConcurrently) {
  auto s = std::make_shared<Shared>();
  Callers a;
  a.Start([s] {
    return s->flight.Do("a", [&s]() -> Result {
      s->Hold();
      return ByteView::Copy("value a");
    });
  });
  ASSERT_TRUE(s->fn_entered.Wait());

  // With key a's fn still blocked, a call for key b runs and returns.
  Callers b;
  b.Start([s] {
    return s->flight.Do("b", [&s]() -> Result {
      EXPECT_EQ(s->flight.InFlight(), 2u);
      return ByteView::Copy("value b");
    });
  });
  const bool b_returned = b.Join();
  s->release.Notify();
  ASSERT_TRUE(b_returned) << "key b waited for key a";
  ASSERT_TRUE(a.Join());

  Outcome outcome_a = a.outcomes()[0].get();
  Outcome outcome_b = b.outcomes()[0].get();
  ASSERT_TRUE(outcome_a.result.ok()) << outcome_a.result.status();
  ASSERT_TRUE(outcome_b.result.ok()) << outcome_b.result.status();
  EXPECT_EQ(outcome_a.result->value.view(), "value a");
  EXPECT_EQ(outcome_b.result->value.view(), "value b");
  EXPECT_FALSE(outcome_a.shared);
  EXPECT_FALSE(outcome_b.shared);
  EXPECT_EQ(s->flight.InFlight(), 0u);
}

TEST(SingleFlightTest, CallAfterCompletionRunsFnAgain) {
  SingleFlight flight;
  const std::thread::id caller = std::this_thread::get_id();
  int runs = 0;
  auto fn = [&]() -> Result {
    EXPECT_EQ(std::this_thread::get_id(), caller) << "fn runs on the first caller's thread";
    ++runs;
    return ByteView::Adopt("run " + std::to_string(runs));
  };

  Outcome first = flight.Do("key", fn);
  Outcome second = flight.Do("key", fn);

  EXPECT_EQ(runs, 2);
  ASSERT_TRUE(first.result.ok()) << first.result.status();
  ASSERT_TRUE(second.result.ok()) << second.result.status();
  EXPECT_EQ(first.result->value.view(), "run 1");
  EXPECT_EQ(second.result->value.view(), "run 2");  // not the first run's result
  EXPECT_FALSE(first.shared);
  EXPECT_FALSE(second.shared);
  EXPECT_EQ(flight.InFlight(), 0u);
}

}  // namespace
}  // namespace lcache
