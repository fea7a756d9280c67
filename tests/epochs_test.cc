// Epochs and RetireList: a retired object outlives every reader that could
// have seen it, and no longer than the next reclaim after they leave.

#include "store/epochs.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace lcache::internal {
namespace {

std::atomic<int> freed{0};
void CountFree(void*) { ++freed; }

// Retires enough objects to trigger a reclaim (a batch is 64).
void RetireBatch(RetireList& list, int n) {
  for (int i = 0; i < n; ++i) list.Retire(nullptr, CountFree, 1);
}

TEST(EpochsTest, AReaderInsideHoldsBackWhatWasRetiredSinceItEntered) {
  freed = 0;
  RetireList list;
  std::atomic<bool> inside{false};
  std::atomic<bool> leave{false};
  std::thread reader([&] {
    Epochs::ReadGuard guard;
    inside = true;
    while (!leave) std::this_thread::yield();
  });
  while (!inside) std::this_thread::yield();
  RetireBatch(list, 200);  // several reclaims while the reader is inside
  EXPECT_EQ(freed.load(), 0);
  EXPECT_EQ(list.pending(), 200u);
  leave = true;
  reader.join();
  RetireBatch(list, 400);  // the next reclaim frees all of them
  EXPECT_EQ(freed.load() + static_cast<int>(list.pending()), 600);
  EXPECT_GE(freed.load(), 400);
  EXPECT_LT(list.pending(), 200u);
}

TEST(EpochsTest, AReaderHoldsBackOnlyWhatWasRetiredSinceTheEpochItEntered) {
  RetireList list;
  RetireBatch(list, 10);  // below a batch: pending, retired in epoch E
  {
    RetireList other;
    RetireBatch(other, 64);  // a reclaim elsewhere: the epoch moves past E
  }
  freed = 0;
  std::atomic<bool> inside{false};
  std::atomic<bool> leave{false};
  std::thread reader([&] {
    Epochs::ReadGuard guard;  // enters after E
    inside = true;
    while (!leave) std::this_thread::yield();
  });
  while (!inside) std::this_thread::yield();
  RetireBatch(list, 54);        // the 64th triggers a reclaim
  EXPECT_EQ(freed.load(), 10);  // the reader cannot have seen those
  EXPECT_EQ(list.pending(), 54u);
  leave = true;
  reader.join();
}

TEST(EpochsTest, DestroyingTheListFreesWhatIsLeft) {
  freed = 0;
  {
    RetireList list;
    RetireBatch(list, 5);
    EXPECT_EQ(freed.load(), 0);
  }
  EXPECT_EQ(freed.load(), 5);
}

TEST(EpochsTest, ThreadsThatLeaveGiveTheirSlotsBack) {
  // Many short-lived reader threads, one at a time: they reuse a few slots
  // (so their indexes stay small), and none stays announced once gone.
  size_t largest_index = 0;
  for (int i = 0; i < 200; ++i) {
    std::thread([&] {
      Epochs::ReadGuard guard;
      largest_index = std::max(largest_index, Epochs::ThisThreadIndex());
    }).join();
  }
  EXPECT_LT(largest_index, 50u);  // the other tests' threads, and these
  freed = 0;
  RetireList list;
  RetireBatch(list, 64);
  EXPECT_EQ(freed.load(), 64);
}

TEST(EpochsTest, AfterABurstOfThreadsANewThreadTakesTheLowestFreeIndex) {
  // 40 threads alive at once take at least 40 slots; once they are gone, a
  // new thread must get a low index again (counters give only the lowest
  // indices a stripe of their own: thread_counters.h).
  constexpr int kThreads = 40;
  std::atomic<int> arrived{0};
  std::atomic<size_t> largest{0};
  std::vector<std::thread> burst;
  for (int i = 0; i < kThreads; ++i) {
    burst.emplace_back([&] {
      const size_t index = Epochs::ThisThreadIndex();
      size_t seen = largest.load();
      while (seen < index && !largest.compare_exchange_weak(seen, index)) {
      }
      ++arrived;
      while (arrived.load() < kThreads) std::this_thread::yield();  // all alive together
    });
  }
  for (std::thread& t : burst) t.join();
  EXPECT_GE(largest.load(), size_t{kThreads - 1});
  size_t next = 0;
  std::thread([&] { next = Epochs::ThisThreadIndex(); }).join();
  EXPECT_LT(next, 2u);  // this thread may hold one slot; the burst left the rest free
}

TEST(EpochsTest, AForkedChildStillReclaims) {
  // A forked child fences (membarrier) with the registration it inherited,
  // or registers again (Epochs::Fence): either way, what it retires is freed.
  freed = 0;
  {
    RetireList list;
    RetireBatch(list, 200);  // the parent has fenced
  }
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    freed = 0;
    RetireList list;
    RetireBatch(list, 200);
    _exit(freed.load() >= 64 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child freed nothing";
}

TEST(EpochsTest, LargeObjectsAreReclaimedByBytesNotOnlyByCount) {
  freed = 0;
  RetireList list(/*max_bytes=*/1 << 20);
  list.Retire(nullptr, CountFree, 600 << 10);
  EXPECT_EQ(freed.load(), 0);
  list.Retire(nullptr, CountFree, 600 << 10);  // 1.2 MiB waiting: reclaimed
  EXPECT_EQ(freed.load(), 2);
  EXPECT_EQ(list.pending_bytes(), 0u);
}

TEST(EpochsTest, AnObjectRetiredWithoutReclaimWaitsForTheNextRetirement) {
  freed = 0;
  RetireList list(/*max_bytes=*/1 << 20);
  list.Retire(nullptr, CountFree, 100, /*may_reclaim=*/false);
  EXPECT_EQ(freed.load(), 0);
  EXPECT_EQ(list.pending_bytes(), 100u);
  list.Retire(nullptr, CountFree, 1);  // far below a batch, but reclaims
  EXPECT_EQ(freed.load(), 2);
}

TEST(EpochsTest, NestedGuardsKeepTheOuterAnnouncement) {
  freed = 0;
  RetireList list;
  std::atomic<bool> inner_done{false};
  std::atomic<bool> leave{false};
  std::thread reader([&] {
    Epochs::ReadGuard outer;
    { Epochs::ReadGuard inner; }  // must not end the outer read
    inner_done = true;
    while (!leave) std::this_thread::yield();
  });
  while (!inner_done) std::this_thread::yield();
  RetireBatch(list, 64);
  EXPECT_EQ(freed.load(), 0);  // the outer guard still holds them back
  leave = true;
  reader.join();
}

}  // namespace
}  // namespace lcache::internal
