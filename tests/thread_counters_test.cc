// ThreadCounters: adds without a read-modify-write lose nothing, with more
// threads alive than there are stripes of their own, and with threads that
// exit and hand their stripe to the next.

#include "store/thread_counters.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace lcache::internal {
namespace {

TEST(ThreadCountersTest, ManyThreadsAliveTogetherLoseNoAdd) {
  ThreadCounters<2> counters;
  constexpr int kThreads = 40;  // more than the 16 stripes of their own
  constexpr int kAdds = 500000;
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      ++started;
      while (started.load() < kThreads) std::this_thread::yield();  // all alive at once
      for (int i = 0; i < kAdds; ++i) {
        counters.Add(0);
        counters.Add(1, 3);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counters.Sum(0), int64_t{kThreads} * kAdds);
  EXPECT_EQ(counters.Sum(1), int64_t{kThreads} * kAdds * 3);
}

TEST(ThreadCountersTest, AStripeHandedToTheNextThreadKeepsItsCount) {
  ThreadCounters<1> counters;
  constexpr int kRounds = 50;
  constexpr int kAdds = 1000;
  int64_t expected = 0;
  for (int r = 0; r < kRounds; ++r) {
    // Two at a time, each taking a stripe a thread of the last round left.
    std::thread a([&] {
      for (int i = 0; i < kAdds; ++i) counters.Add(0);
    });
    std::thread b([&] {
      for (int i = 0; i < kAdds; ++i) counters.Add(0, 2);
    });
    a.join();
    b.join();
    expected += 3 * kAdds;
    ASSERT_EQ(counters.Sum(0), expected) << "round " << r;
  }
}

TEST(ThreadCountersTest, SumsWhileAddsRunNeverExceedWhatWasAdded) {
  ThreadCounters<1> counters;
  std::atomic<int64_t> added{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop) {
      counters.Add(0);
      added.fetch_add(1);
    }
  });
  int64_t last = 0;
  for (int i = 0; i < 10000; ++i) {
    const int64_t now = counters.Sum(0);
    EXPECT_GE(now, last);  // one writer: its stripe only grows
    EXPECT_LE(now, added.load() + 1);
    last = now;
  }
  stop = true;
  writer.join();
  EXPECT_EQ(counters.Sum(0), added.load());
}

}  // namespace
}  // namespace lcache::internal
