// Group::GetAsync: the completion-based path every server request takes.
// One flight per key with a list of waiters, for peer and getter loads;
// cancellation and deadlines of waiters; the deadline a peer call gets; and
// the synchronous Get sharing the same flights. The runner here is a queue
// the test drains by hand, so "queued" and "started" are under its control.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/group.h"

namespace lcache {
namespace {

using ::lcache::testing::Gate;
using ::testing::HasSubstr;

// Takes load tasks and runs them when told to.
class ManualRunner {
 public:
  LoadRunner runner() {
    return [this](LoadTask task) -> absl::Status {
      std::lock_guard lock(mu_);
      if (refuse_) return absl::ResourceExhaustedError("test runner is full");
      tasks_.push_back(std::move(task));
      return absl::OkStatus();
    };
  }
  size_t queued() {
    std::lock_guard lock(mu_);
    return tasks_.size();
  }
  // Runs every task queued (and those they queue) with `run`.
  void Drain(absl::Status run = absl::OkStatus()) {
    while (true) {
      LoadTask task;
      {
        std::lock_guard lock(mu_);
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task(run);
    }
  }
  void Refuse() {
    std::lock_guard lock(mu_);
    refuse_ = true;
  }

 private:
  std::mutex mu_;
  std::deque<LoadTask> tasks_;
  bool refuse_ = false;
};

// The answers of GetAsync calls, in any order, from any thread.
class Answers {
 public:
  GetCallback Add() {
    return [this](absl::StatusOr<ExpiringValue> v) {
      std::lock_guard lock(mu_);
      results_.push_back(std::move(v));
    };
  }
  std::vector<absl::StatusOr<ExpiringValue>> results() {
    std::lock_guard lock(mu_);
    return results_;
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return results_.size();
  }

 private:
  std::mutex mu_;
  std::vector<absl::StatusOr<ExpiringValue>> results_;
};

std::unique_ptr<Group> MakeGroup(GroupOptions options) {
  if (options.name.empty()) options.name = "scores";
  absl::StatusOr<std::unique_ptr<Group>> g = Group::Create(std::move(options));
  EXPECT_TRUE(g.ok()) << g.status();
  return *std::move(g);
}

Getter CountingGetter(std::atomic<int>* loads) {
  return [loads](std::string_view key) -> absl::StatusOr<Loaded> {
    ++*loads;
    return ByteView::Copy("v-" + std::string(key));
  };
}

TEST(GroupAsyncTest, ManyWaitersShareOneLoadAndAllGetTheValue) {
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads)});
  ManualRunner runner;
  Answers answers;
  for (int i = 0; i < 100; ++i) group->GetAsync("Tom", {.run_load = runner.runner()}, answers.Add());
  EXPECT_EQ(runner.queued(), 1u);  // one flight, one load
  EXPECT_EQ(answers.size(), 0u);   // nobody answered before the load
  runner.Drain();
  EXPECT_EQ(loads, 1);
  ASSERT_EQ(answers.size(), 100u);
  for (const auto& v : answers.results()) {
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->value.view(), "v-Tom");
  }
  // Now a hit, answered before GetAsync returns, with no load.
  Answers hit;
  group->GetAsync("Tom", {.run_load = runner.runner()}, hit.Add());
  EXPECT_EQ(hit.size(), 1u);
  EXPECT_EQ(runner.queued(), 0u);
  const GroupStats stats = group->Stats();
  EXPECT_EQ(stats.loads, 100);
  EXPECT_EQ(stats.loads_deduped, 1);
  EXPECT_EQ(stats.cache_hits, 1);
  EXPECT_EQ(stats.get_miss_latency.count, 100);
}

TEST(GroupAsyncTest, InvalidKeysAreAnsweredInlineWithoutALoad) {
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads), .max_key_bytes = 8});
  ManualRunner runner;
  Answers answers;
  group->GetAsync("", {.run_load = runner.runner()}, answers.Add());
  group->GetAsync("123456789", {.run_load = runner.runner()}, answers.Add());
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers.results()[0].status().message(), kEmptyKeyMessage);
  EXPECT_TRUE(absl::IsInvalidArgument(answers.results()[1].status()));
  EXPECT_EQ(runner.queued(), 0u);
  EXPECT_EQ(loads, 0);
}

TEST(GroupAsyncTest, OneCancelledWaiterDoesNotStopTheLoadForTheOthers) {
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads)});
  ManualRunner runner;
  Answers answers;
  auto gone = std::make_shared<std::atomic<bool>>(false);
  group->GetAsync("Tom", {.run_load = runner.runner(), .cancelled = gone}, answers.Add());
  group->GetAsync("Tom", {.run_load = runner.runner()}, answers.Add());
  gone->store(true);
  runner.Drain();
  EXPECT_EQ(loads, 1);
  ASSERT_EQ(answers.size(), 2u);
  for (const auto& v : answers.results()) EXPECT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(group->Stats().loads_cancelled, 0);
}

TEST(GroupAsyncTest, ALoadEveryWaiterLeftIsDroppedAndCounted) {
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads)});
  ManualRunner runner;
  Answers answers;
  auto a = std::make_shared<std::atomic<bool>>(false);
  auto b = std::make_shared<std::atomic<bool>>(false);
  group->GetAsync("Tom", {.run_load = runner.runner(), .cancelled = a}, answers.Add());
  group->GetAsync("Tom", {.run_load = runner.runner(), .cancelled = b}, answers.Add());
  a->store(true);
  b->store(true);
  runner.Drain();
  EXPECT_EQ(loads, 0);
  ASSERT_EQ(answers.size(), 2u);
  for (const auto& v : answers.results()) {
    EXPECT_TRUE(absl::IsCancelled(v.status())) << v.status();
    EXPECT_TRUE(IsLoadNotRun(v.status()));
  }
  EXPECT_EQ(group->Stats().loads_cancelled, 1);
  // Nothing was cached: the next caller loads.
  EXPECT_EQ(group->Get("Tom")->view(), "v-Tom");
  EXPECT_EQ(loads, 1);
}

TEST(GroupAsyncTest, ALoadWhoseWaitersAreAllPastTheirDeadlineIsDropped) {
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads)});
  ManualRunner runner;
  Answers answers;
  const absl::Time past = absl::Now() - absl::Seconds(1);
  group->GetAsync("Tom", {.run_load = runner.runner(), .deadline = past}, answers.Add());
  runner.Drain();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_TRUE(absl::IsDeadlineExceeded(answers.results()[0].status()));
  EXPECT_TRUE(IsLoadNotRun(answers.results()[0].status()));
  EXPECT_EQ(loads, 0);
  EXPECT_EQ(group->Stats().loads_cancelled, 1);
}

TEST(GroupAsyncTest, AWaiterWithoutADeadlineKeepsTheLoadAlive) {
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads)});
  ManualRunner runner;
  Answers answers;
  const absl::Time past = absl::Now() - absl::Seconds(1);
  group->GetAsync("Tom", {.run_load = runner.runner(), .deadline = past}, answers.Add());
  group->GetAsync("Tom", {.run_load = runner.runner()}, answers.Add());
  runner.Drain();
  EXPECT_EQ(loads, 1);
  for (const auto& v : answers.results()) EXPECT_TRUE(v.ok()) << v.status();
}

TEST(GroupAsyncTest, AGetterThatThrowsAnswersEveryWaiterAndReleasesTheKey) {
  std::atomic<int> calls{0};
  auto group = MakeGroup({.getter = [&calls](std::string_view) -> absl::StatusOr<Loaded> {
    if (++calls == 1) throw std::runtime_error("boom");
    return ByteView::Copy("ok");
  }});
  ManualRunner runner;
  Answers answers;
  for (int i = 0; i < 3; ++i) group->GetAsync("k", {.run_load = runner.runner()}, answers.Add());
  runner.Drain();
  ASSERT_EQ(answers.size(), 3u);
  for (const auto& v : answers.results()) {
    EXPECT_TRUE(absl::IsInternal(v.status()));
    EXPECT_THAT(std::string(v.status().message()), HasSubstr("boom"));
  }
  Answers again;
  group->GetAsync("k", {.run_load = runner.runner()}, again.Add());
  runner.Drain();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again.results()[0]->value.view(), "ok");
}

TEST(GroupAsyncTest, ARefusedLoadFailsEveryWaiterWithTheRunnersError) {
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads)});
  ManualRunner runner;
  runner.Refuse();
  Answers answers;
  group->GetAsync("Tom", {.run_load = runner.runner()}, answers.Add());
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_TRUE(absl::IsResourceExhausted(answers.results()[0].status()));
  EXPECT_TRUE(IsLoadNotRun(answers.results()[0].status()));
  // A getter's own error is the key's answer, not a load that did not run.
  auto failing = MakeGroup({.getter = [](std::string_view) -> absl::StatusOr<Loaded> {
    return absl::ResourceExhaustedError("quota");
  }});
  EXPECT_FALSE(IsLoadNotRun(failing->Get("x").status()));
}

TEST(GroupAsyncTest, ATaskDroppedByAStoppingRunnerEndsTheFlightWithItsError) {
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads)});
  ManualRunner runner;
  Answers answers;
  group->GetAsync("Tom", {.run_load = runner.runner()}, answers.Add());
  runner.Drain(absl::UnavailableError("shutting down"));
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_TRUE(absl::IsUnavailable(answers.results()[0].status()));
  EXPECT_EQ(loads, 0);
}

// A peer answered on a thread of its own, like a transport's I/O thread; it
// records the deadline it was given, holds every call until Open(), and
// ends a call at once with CANCELLED when its Cancel is called.
class ThreadedPeer : public PeerGetter {
 public:
  absl::StatusOr<PeerValue> Get(std::string_view, std::string_view) override {
    return absl::InternalError("the synchronous Get must not be used");
  }
  bool StartGet(std::string_view, std::string_view key, absl::Time deadline, Done done,
                Cancel* cancel) override {
    ++calls;
    auto cancelled = std::make_shared<bool>(false);  // guarded by mu
    {
      std::lock_guard lock(mu);
      deadlines.push_back(deadline);
    }
    if (cancel != nullptr) {
      *cancel = [this, cancelled] {
        ++cancels;
        std::lock_guard lock(mu);
        *cancelled = true;
        cv.notify_all();
      };
    }
    threads.emplace_back([this, cancelled, key = std::string(key), done = std::move(done)] {
      bool was_cancelled;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return open || *cancelled; });
        was_cancelled = *cancelled;
      }
      if (was_cancelled) {
        done(absl::CancelledError("called off"));
      } else if (fail) {
        done(absl::UnavailableError("peer down"));
      } else {
        done(PeerValue(ByteView::Copy("remote-" + key)));
      }
    });
    return true;
  }
  void Open() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
  // The last reference may be the Group's, dropped on one of our threads
  // when its callback returns: that one cannot join itself.
  ~ThreadedPeer() override {
    Open();
    for (std::thread& t : threads) {
      if (t.get_id() == std::this_thread::get_id()) {
        t.detach();
      } else {
        t.join();
      }
    }
  }

  std::atomic<int> calls{0};
  std::atomic<int> cancels{0};
  std::atomic<bool> fail{false};
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;  // guarded by mu
  std::vector<absl::Time> deadlines;
  std::vector<std::thread> threads;
};

class OnePeerPicker : public PeerPicker {
 public:
  explicit OnePeerPicker(std::shared_ptr<PeerGetter> peer) : peer_(std::move(peer)) {}
  std::shared_ptr<PeerGetter> PickPeer(std::string_view) override { return peer_; }

 private:
  std::shared_ptr<PeerGetter> peer_;
};

// Polls `done` until it holds or 10 s pass (the answer comes from another thread).
template <typename Pred>
bool Eventually(Pred done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(GroupAsyncTest, APeerCallIsSharedByItsWaitersAndAnsweredOnThePeersThread) {
  auto peer = std::make_shared<ThreadedPeer>();
  OnePeerPicker picker(peer);
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads), .peers = &picker});
  ManualRunner runner;
  Answers answers;
  for (int i = 0; i < 20; ++i) group->GetAsync("Tom", {.run_load = runner.runner()}, answers.Add());
  EXPECT_EQ(peer->calls, 1);
  EXPECT_EQ(runner.queued(), 0u);  // a peer call needs no load thread
  peer->Open();
  ASSERT_TRUE(Eventually([&] { return answers.size() == 20; }));
  for (const auto& v : answers.results()) EXPECT_EQ(v->value.view(), "remote-Tom");
  EXPECT_EQ(loads, 0);
  EXPECT_EQ(group->Stats().peer_loads, 1);
}

// CallerLeft resets the peer call once every caller of the flight has gone,
// and the flight ends CANCELLED without a fallback load.
TEST(GroupAsyncTest, APeerCallEveryCallerLeftIsResetWithoutAFallback) {
  auto peer = std::make_shared<ThreadedPeer>();
  OnePeerPicker picker(peer);
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads), .peers = &picker});
  ManualRunner runner;
  Answers answers;
  auto a = std::make_shared<std::atomic<bool>>(false);
  auto b = std::make_shared<std::atomic<bool>>(false);
  group->GetAsync("Tom", {.run_load = runner.runner(), .cancelled = a}, answers.Add());
  group->GetAsync("Tom", {.run_load = runner.runner(), .cancelled = b}, answers.Add());
  EXPECT_EQ(peer->calls, 1);
  a->store(true);
  group->CallerLeft("Tom");
  EXPECT_EQ(peer->cancels, 0);  // b still waits
  b->store(true);
  group->CallerLeft("Tom");
  EXPECT_EQ(peer->cancels, 1);
  ASSERT_TRUE(Eventually([&] { return answers.size() == 2; }));
  for (const auto& v : answers.results()) {
    EXPECT_TRUE(absl::IsCancelled(v.status())) << v.status();
    EXPECT_TRUE(IsLoadNotRun(v.status()));
  }
  EXPECT_EQ(runner.queued(), 0u);  // no fallback
  EXPECT_EQ(loads, 0);
  const GroupStats stats = group->Stats();
  EXPECT_EQ(stats.loads_cancelled, 1);
  EXPECT_EQ(stats.peer_errors, 0);
  // A caller without a flag keeps the next flight's call alive.
  Answers more;
  auto c = std::make_shared<std::atomic<bool>>(false);
  group->GetAsync("Jack", {.run_load = runner.runner(), .cancelled = c}, more.Add());
  group->GetAsync("Jack", {.run_load = runner.runner()}, more.Add());
  c->store(true);
  group->CallerLeft("Jack");
  EXPECT_EQ(peer->cancels, 1);
  peer->Open();
  ASSERT_TRUE(Eventually([&] { return more.size() == 2; }));
  for (const auto& v : more.results()) EXPECT_EQ(v->value.view(), "remote-Jack");
}

TEST(GroupAsyncTest, AFailedPeerCallFallsBackToOneLocalLoadOnTheRunner) {
  auto peer = std::make_shared<ThreadedPeer>();
  peer->fail = true;
  OnePeerPicker picker(peer);
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads), .peers = &picker});
  ManualRunner runner;
  Answers answers;
  for (int i = 0; i < 5; ++i) group->GetAsync("Tom", {.run_load = runner.runner()}, answers.Add());
  peer->Open();
  // The fallback waits for a load thread: the getter never runs on the
  // peer's (I/O) thread.
  ASSERT_TRUE(Eventually([&] { return runner.queued() == 1; }));
  EXPECT_EQ(answers.size(), 0u);
  runner.Drain();
  ASSERT_EQ(answers.size(), 5u);
  for (const auto& v : answers.results()) EXPECT_EQ(v->value.view(), "v-Tom");
  EXPECT_EQ(loads, 1);
  EXPECT_EQ(group->Stats().peer_errors, 1);
}

TEST(GroupAsyncTest, APeerCallLeavesAQuarterOfTheCallersTimeForTheFallback) {
  auto peer = std::make_shared<ThreadedPeer>();
  OnePeerPicker picker(peer);
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads), .peers = &picker});
  ManualRunner runner;
  Answers answers;
  const absl::Time t0 = absl::Now();
  group->GetAsync("a", {.run_load = runner.runner(), .deadline = t0 + absl::Milliseconds(400)},
                  answers.Add());
  group->GetAsync("b", {.run_load = runner.runner(), .deadline = t0 + absl::Seconds(2)},
                  answers.Add());
  group->GetAsync("c", {.run_load = runner.runner()}, answers.Add());
  const absl::Time t1 = absl::Now();
  peer->Open();
  ASSERT_TRUE(Eventually([&] { return answers.size() == 3; }));
  std::lock_guard lock(peer->mu);
  ASSERT_EQ(peer->deadlines.size(), 3u);
  // 400 ms: a quarter (100 ms) stays for the fallback.
  EXPECT_GE(peer->deadlines[0], t0 + absl::Milliseconds(300));
  EXPECT_LE(peer->deadlines[0], t1 + absl::Milliseconds(300));
  // 2 s: the reserve is capped at 250 ms.
  EXPECT_GE(peer->deadlines[1], t0 + absl::Milliseconds(1750));
  EXPECT_LE(peer->deadlines[1], t1 + absl::Milliseconds(1750));
  // No deadline: the transport's own timeout applies.
  EXPECT_EQ(peer->deadlines[2], absl::InfiniteFuture());
}

TEST(GroupAsyncTest, SyncAndAsyncCallersShareOneFlightAndTheSyncLeaderRunsTheGetter) {
  Gate gate;
  std::atomic<int> loads{0};
  std::atomic<std::thread::id> getter_thread{};
  auto group = MakeGroup({.getter = [&](std::string_view) -> absl::StatusOr<Loaded> {
    ++loads;
    getter_thread = std::this_thread::get_id();
    gate.Wait();
    return ByteView::Copy("value");
  }});
  std::thread::id sync_thread;
  std::optional<absl::StatusOr<ByteView>> sync_result;
  std::thread sync([&] {
    sync_thread = std::this_thread::get_id();
    sync_result = group->Get("k");
  });
  ASSERT_TRUE(Eventually([&] { return loads == 1; }));
  ManualRunner runner;
  Answers answers;
  group->GetAsync("k", {.run_load = runner.runner()}, answers.Add());
  EXPECT_EQ(runner.queued(), 0u);  // joined the sync caller's flight
  gate.Open();
  sync.join();
  ASSERT_TRUE(Eventually([&] { return answers.size() == 1; }));
  EXPECT_EQ(answers.results()[0]->value.view(), "value");
  ASSERT_TRUE(sync_result.has_value() && sync_result->ok());
  EXPECT_EQ(loads, 1);
  EXPECT_EQ(getter_thread.load(), sync_thread);
}

TEST(GroupAsyncTest, ASyncGetWhosePeerFailsRunsTheFallbackOnItsOwnThread) {
  auto peer = std::make_shared<ThreadedPeer>();
  peer->fail = true;
  peer->Open();
  OnePeerPicker picker(peer);
  std::atomic<std::thread::id> getter_thread{};
  auto group = MakeGroup({.getter =
                              [&](std::string_view) -> absl::StatusOr<Loaded> {
                                getter_thread = std::this_thread::get_id();
                                return ByteView::Copy("local");
                              },
                          .peers = &picker});
  EXPECT_EQ(group->Get("k")->view(), "local");
  EXPECT_EQ(getter_thread.load(), std::this_thread::get_id());
}

TEST(GroupAsyncTest, ConcurrentAsyncAndSyncCallersOfManyKeysLoadEachOnce) {
  std::atomic<int> loads{0};
  auto group = MakeGroup({.getter = CountingGetter(&loads)});
  constexpr int kKeys = 50;
  std::vector<std::thread> threads;
  std::atomic<int> answered{0};
  std::mutex runner_mu;
  std::vector<std::thread> load_threads;
  // A runner with a thread per task: loads run concurrently with callers.
  LoadRunner runner = [&](LoadTask task) {
    std::lock_guard lock(runner_mu);
    load_threads.emplace_back([task = std::move(task)] { task(absl::OkStatus()); });
    return absl::OkStatus();
  };
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kKeys; ++k) {
        const std::string key = "key-" + std::to_string(k);
        if (t % 2 == 0) {
          group->GetAsync(key, {.run_load = runner}, [&](absl::StatusOr<ExpiringValue> v) {
            EXPECT_TRUE(v.ok());
            ++answered;
          });
        } else {
          EXPECT_TRUE(group->Get(key).ok());
          ++answered;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(Eventually([&] { return answered == 4 * kKeys; }));
  {
    std::lock_guard lock(runner_mu);
    for (std::thread& t : load_threads) t.join();
  }
  EXPECT_EQ(loads, kKeys);
}

}  // namespace
}  // namespace lcache
