// Epochs and RetireList: a retired object outlives every reader that could
// have seen it, and no longer than the next reclaim after they leave.

#include "store/epochs.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace lcache::internal {
namespace {

std::atomic<int> freed{0};
void CountFree(void*) { ++freed; }

// Retires enough objects to trigger a reclaim (a batch is 64).
void RetireBatch(RetireList& list, int n) {
  for (int i = 0; i < n; ++i) list.Retire(nullptr, CountFree);
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
  // Many short-lived reader threads: slots are reused, and none stays
  // announced after its thread is gone.
  for (int i = 0; i < 200; ++i) {
    std::thread([] { Epochs::ReadGuard guard; }).join();
  }
  freed = 0;
  RetireList list;
  RetireBatch(list, 64);
  EXPECT_EQ(freed.load(), 64);
}

}  // namespace
}  // namespace lcache::internal
