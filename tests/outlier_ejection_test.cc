// PeerHealth, the state machine of outlier ejection: which results count,
// ejection after consecutive failures, one probe after the backoff, backoff
// growth and cap, stale results, and many threads at once (this file also
// runs under ThreadSanitizer). Time is a ManualClock: nothing sleeps.

#include "lcache/outlier_ejection.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/clock.h"

namespace lcache {
namespace {

using Admission = PeerHealth::Admission;
using Kind = EjectionEvent::Kind;

const absl::Status kRefused = absl::UnavailableError("connection refused");
const absl::Status kDeadline = absl::DeadlineExceededError("deadline exceeded");

// What the callback saw, copied (the event's address is a view).
struct Seen {
  Kind kind;
  std::string address;
  absl::Duration backoff;
  int streak;
  bool failed_probe;
  absl::StatusCode error;
  absl::Duration out_for;
};

class PeerHealthTest : public ::testing::Test {
 protected:
  EjectionOptions Options(int after = 3, absl::Duration base = absl::Seconds(1),
                          absl::Duration max = absl::Seconds(8)) {
    return {
        .after_failures = after,
        .base_backoff = base,
        .max_backoff = max,
        .clock = &clock_,
        .on_event =
            [this](const EjectionEvent& e) {
              std::lock_guard lock(events_mu_);
              events_.push_back({e.kind, std::string(e.address), e.backoff, e.streak,
                                 e.failed_probe, e.last_error.code(), e.out_for});
            },
    };
  }

  std::unique_ptr<PeerHealth> Make(const EjectionOptions& options) {
    return std::make_unique<PeerHealth>("10.0.0.2:9000", options, counters_);
  }

  // A call admitted with kUse, failing or not.
  static void Call(PeerHealth& health, const absl::Status& result) {
    ASSERT_EQ(health.Admit(), Admission::kUse);
    health.Record(result, health.epoch());
  }

  // Ejects a healthy peer with `after` failures.
  static void FailTimes(PeerHealth& health, int times) {
    for (int i = 0; i < times; ++i) Call(health, kRefused);
  }

  // The probe goes exactly `backoff` after the ejection: not a nanosecond
  // earlier. Leaves the probe outstanding.
  void ExpectProbeAfter(PeerHealth& health, absl::Duration backoff) {
    clock_.Advance(backoff - absl::Nanoseconds(1));
    EXPECT_EQ(health.Admit(), Admission::kSkip);
    clock_.Advance(absl::Nanoseconds(1));
    EXPECT_EQ(health.Admit(), Admission::kProbe);
  }

  std::vector<Seen> Events() {
    std::lock_guard lock(events_mu_);
    return events_;
  }

  ManualClock clock_;
  std::shared_ptr<EjectionCounters> counters_ = std::make_shared<EjectionCounters>();
  std::mutex events_mu_;
  std::vector<Seen> events_;
};

TEST(IsPeerFailureTest, OnlyUnreachableAndDeadlineCount) {
  EXPECT_TRUE(IsPeerFailure(kRefused));
  EXPECT_TRUE(IsPeerFailure(kDeadline));
  // Answers: the peer is alive, whatever it said.
  EXPECT_FALSE(IsPeerFailure(absl::OkStatus()));
  EXPECT_FALSE(IsPeerFailure(absl::NotFoundError("lru_cache: key not found")));
  EXPECT_FALSE(IsPeerFailure(absl::InvalidArgumentError("lru_cache: empty key")));
  EXPECT_FALSE(IsPeerFailure(absl::UnknownError("the owner's getter failed")));
  EXPECT_FALSE(IsPeerFailure(absl::ResourceExhaustedError("load queue full")));
  EXPECT_FALSE(IsPeerFailure(absl::InternalError("invalid response")));
}

TEST_F(PeerHealthTest, EjectedAfterConsecutiveFailuresOnly) {
  auto health = Make(Options(3));
  FailTimes(*health, 2);
  Call(*health, absl::NotFoundError("lru_cache: key not found"));  // an answer resets the count
  FailTimes(*health, 2);
  Call(*health, absl::OkStatus());
  FailTimes(*health, 2);
  EXPECT_FALSE(health->out());
  EXPECT_TRUE(Events().empty());

  Call(*health, kDeadline);  // the third in a row
  EXPECT_TRUE(health->out());
  EXPECT_EQ(health->Admit(), Admission::kSkip);
  EXPECT_EQ(health->Admit(), Admission::kSkip);

  const std::vector<Seen> events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::kEjected);
  EXPECT_EQ(events[0].address, "10.0.0.2:9000");
  EXPECT_EQ(events[0].backoff, absl::Seconds(1));
  EXPECT_EQ(events[0].streak, 1);
  EXPECT_FALSE(events[0].failed_probe);
  EXPECT_EQ(events[0].error, absl::StatusCode::kDeadlineExceeded);
  const EjectionStats stats = counters_->Read();
  EXPECT_EQ(stats.ejections, 1);
  EXPECT_EQ(stats.skipped, 2);
  EXPECT_EQ(stats.returns, 0);
}

TEST_F(PeerHealthTest, AnswersNeverEject) {
  auto health = Make(Options(1));
  for (int i = 0; i < 100; ++i) {
    Call(*health, absl::NotFoundError("lru_cache: key not found"));
    Call(*health, absl::InvalidArgumentError("lru_cache: empty key"));
    Call(*health, absl::UnknownError("getter failed over there"));
    Call(*health, absl::ResourceExhaustedError("busy"));
  }
  EXPECT_FALSE(health->out());
  EXPECT_EQ(counters_->Read().ejections, 0);
}

TEST_F(PeerHealthTest, OneProbeAfterTheBackoffAndASuccessfulProbeReturnsThePeer) {
  auto health = Make(Options(3));
  FailTimes(*health, 3);
  ExpectProbeAfter(*health, absl::Seconds(1));
  // While the probe is in flight every other request is served locally.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(health->Admit(), Admission::kSkip);
  clock_.Advance(absl::Milliseconds(30));                                // the probe's round trip
  health->RecordProbe(absl::NotFoundError("lru_cache: key not found"));  // an answer
  EXPECT_FALSE(health->out());
  EXPECT_EQ(health->Admit(), Admission::kUse);

  const std::vector<Seen> events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].kind, Kind::kReturned);
  EXPECT_EQ(events[1].out_for, absl::Milliseconds(1030));
  const EjectionStats stats = counters_->Read();
  EXPECT_EQ(stats.ejections, 1);
  EXPECT_EQ(stats.probes, 1);
  EXPECT_EQ(stats.returns, 1);
  EXPECT_EQ(stats.skipped, 11);
}

TEST_F(PeerHealthTest, FailedProbesDoubleTheBackoffUpToTheCap) {
  auto health = Make(Options(3, absl::Seconds(1), absl::Seconds(5)));
  FailTimes(*health, 3);
  ExpectProbeAfter(*health, absl::Seconds(1));
  health->RecordProbe(kRefused);
  ExpectProbeAfter(*health, absl::Seconds(2));
  health->RecordProbe(kDeadline);
  ExpectProbeAfter(*health, absl::Seconds(4));
  health->RecordProbe(kRefused);
  ExpectProbeAfter(*health, absl::Seconds(5));  // capped
  health->RecordProbe(kRefused);
  ExpectProbeAfter(*health, absl::Seconds(5));
  health->RecordProbe(absl::OkStatus());
  EXPECT_FALSE(health->out());

  std::vector<absl::Duration> backoffs;
  for (const Seen& e : Events()) {
    if (e.kind == Kind::kEjected) backoffs.push_back(e.backoff);
  }
  EXPECT_THAT(backoffs, ::testing::ElementsAre(absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                                               absl::Seconds(5), absl::Seconds(5)));
  EXPECT_EQ(Events().back().kind, Kind::kReturned);
  EXPECT_EQ(Events().back().out_for, absl::Seconds(17));
  EXPECT_EQ(counters_->Read().ejections, 5);
  EXPECT_EQ(counters_->Read().probes, 5);
}

TEST_F(PeerHealthTest, LateFailuresFromBeforeAReturnDoNotEjectAgain) {
  auto health = Make(Options(3));
  // Calls that started while the peer was healthy, then hung.
  ASSERT_EQ(health->Admit(), Admission::kUse);
  const uint64_t before = health->epoch();
  FailTimes(*health, 3);
  ExpectProbeAfter(*health, absl::Seconds(1));
  health->RecordProbe(absl::OkStatus());
  // Their deadlines expire now, after the peer came back.
  for (int i = 0; i < 10; ++i) health->Record(kDeadline, before);
  EXPECT_FALSE(health->out());
  // New failures still count from zero.
  FailTimes(*health, 2);
  EXPECT_FALSE(health->out());
  Call(*health, kRefused);
  EXPECT_TRUE(health->out());
}

TEST_F(PeerHealthTest, FlappingPeerKeepsGrowingItsBackoffUntilItStaysBack) {
  auto health = Make(Options(3, absl::Seconds(1), absl::Seconds(8)));
  FailTimes(*health, 3);
  ExpectProbeAfter(*health, absl::Seconds(1));
  health->RecordProbe(absl::OkStatus());
  // Fails again within max_backoff of coming back: the row continues.
  clock_.Advance(absl::Seconds(7));
  FailTimes(*health, 3);
  ExpectProbeAfter(*health, absl::Seconds(2));
  health->RecordProbe(absl::OkStatus());
  // Back for max_backoff: the next ejection starts over at the base.
  clock_.Advance(absl::Seconds(8));
  FailTimes(*health, 3);
  ExpectProbeAfter(*health, absl::Seconds(1));

  std::vector<int> streaks;
  for (const Seen& e : Events()) {
    if (e.kind == Kind::kEjected) streaks.push_back(e.streak);
  }
  EXPECT_THAT(streaks, ::testing::ElementsAre(1, 2, 1));
}

TEST_F(PeerHealthTest, ALostProbeIsReplacedAfterMaxBackoff) {
  auto health = Make(Options(3, absl::Seconds(1), absl::Seconds(8)));
  FailTimes(*health, 3);
  ExpectProbeAfter(*health, absl::Seconds(1));
  // Its caller never reports. Another probe only after max_backoff.
  ExpectProbeAfter(*health, absl::Seconds(8));
  health->RecordProbe(absl::OkStatus());
  EXPECT_FALSE(health->out());
  // The lost probe reporting late changes nothing.
  health->RecordProbe(kRefused);
  EXPECT_FALSE(health->out());
  EXPECT_EQ(counters_->Read().probes, 2);
}

TEST_F(PeerHealthTest, MaxBelowBaseIsRaisedToBase) {
  auto health = Make(Options(1, absl::Seconds(2), absl::Seconds(1)));
  FailTimes(*health, 1);
  ExpectProbeAfter(*health, absl::Seconds(2));
  health->RecordProbe(kRefused);
  ExpectProbeAfter(*health, absl::Seconds(2));
}

// Four threads call a peer that goes down and up while the main thread moves
// the clock. Whatever the interleaving: never two probes at once, events
// alternate ejected/returned (several ejections in a row only through failed
// probes), and the counters add up.
TEST_F(PeerHealthTest, ConcurrentCallersSeeOneProbeAtATime) {
  auto health = Make(Options(3, absl::Milliseconds(10), absl::Milliseconds(40)));
  std::atomic<bool> up{true}, stop{false};
  std::atomic<int> probes_in_flight{0}, overlaps{0};
  std::atomic<int64_t> calls{0};

  auto caller = [&] {
    while (!stop.load(std::memory_order_acquire)) {
      switch (health->Admit()) {
        case Admission::kUse: {
          const uint64_t epoch = health->epoch();
          health->Record(up.load() ? absl::OkStatus() : kRefused, epoch);
          break;
        }
        case Admission::kProbe: {
          if (probes_in_flight.fetch_add(1) != 0) ++overlaps;
          const absl::Status result = up.load() ? absl::OkStatus() : kDeadline;
          probes_in_flight.fetch_sub(1);  // before reporting: the report ends it
          health->RecordProbe(result);
          break;
        }
        case Admission::kSkip:
          break;
      }
      calls.fetch_add(1, std::memory_order_relaxed);
    }
  };

  // Polls `done` while the callers run; fails after 30 s.
  auto wait_for = [&](auto done, const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "timed out waiting for " << what;
        return false;
      }
      std::this_thread::yield();
    }
    return true;
  };

  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back(caller);

  constexpr int kOutages = 20;
  for (int outage = 0; outage < kOutages; ++outage) {
    up.store(false);
    if (!wait_for([&] { return health->out(); }, "ejection")) break;
    // Let a few probes fail while it is down. Each failed probe ejects the
    // peer again; only then does the clock move on (moving it while a probe
    // is in flight could outlast the probe's lease).
    for (int i = 0; i < 3; ++i) {
      const int64_t ejections = counters_->Read().ejections;
      clock_.Advance(absl::Milliseconds(40));
      if (!wait_for([&] { return counters_->Read().ejections > ejections; }, "a failed probe")) {
        break;
      }
    }
    up.store(true);
    clock_.Advance(absl::Milliseconds(40));
    if (!wait_for([&] { return !health->out(); }, "return")) break;
    const int64_t seen = calls.load();
    wait_for([&] { return calls.load() > seen + 100; }, "calls to a healthy peer");
  }
  stop.store(true);
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(overlaps.load(), 0);
  const std::vector<Seen> events = Events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().kind, Kind::kEjected);
  for (size_t i = 1; i < events.size(); ++i) {
    if (events[i].kind == Kind::kReturned) {
      EXPECT_EQ(events[i - 1].kind, Kind::kEjected) << i;
    } else if (events[i - 1].kind == Kind::kEjected) {
      EXPECT_TRUE(events[i].failed_probe) << i;  // ejected while out: only by a probe
    } else {
      EXPECT_FALSE(events[i].failed_probe) << i;  // ejected after a return: by failures
    }
  }
  const EjectionStats stats = counters_->Read();
  EXPECT_EQ(stats.returns, kOutages);
  EXPECT_EQ(stats.ejections, kOutages * 4);  // one per outage, and three failed probes each
  EXPECT_EQ(stats.probes, stats.ejections);  // every ejection ended in a probe
  EXPECT_EQ(stats.ejections + stats.returns, static_cast<int64_t>(events.size()));
}

}  // namespace
}  // namespace lcache
