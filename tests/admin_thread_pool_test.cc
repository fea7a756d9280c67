// The admin listener's thread pool (src/node/admin_thread_pool.h): a
// connection never waits behind another while the pool has room.

#include "node/admin_thread_pool.h"

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gate.h"
#include "gtest/gtest.h"

namespace lcache::internal {
namespace {

using ::lcache::testing::Gate;

// Two jobs queued at once while one thread is idle: the idle thread takes
// one, and the other gets a thread of its own instead of waiting for the
// first to end (a probe queued behind a slow client).
TEST(ElasticThreadPoolTest, JobsBeyondTheIdleThreadsGetThreadsOfTheirOwn) {
  // Declared before the pool, which joins its threads first when it goes.
  Gate gate;
  absl::Notification slow_started, probe_done;
  ElasticThreadPool pool(4);
  absl::Notification first_done;
  pool.enqueue([&] { first_done.Notify(); });
  first_done.WaitForNotification();
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (pool.idle() != 1 && absl::Now() < give_up) std::this_thread::yield();
  ASSERT_EQ(pool.idle(), 1);

  pool.enqueue([&] {
    slow_started.Notify();
    gate.Wait();
  });
  pool.enqueue([&] { probe_done.Notify(); });
  EXPECT_TRUE(probe_done.WaitForNotificationWithTimeout(absl::Seconds(10)))
      << "the second job waited for the first";
  EXPECT_TRUE(slow_started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(pool.threads(), 2);
  gate.Open();
}

TEST(ElasticThreadPoolTest, NoMoreThreadsThanTheMaximum) {
  Gate gate;
  absl::Notification third_done;
  ElasticThreadPool pool(2);
  for (int i = 0; i < 2; ++i) pool.enqueue([&] { gate.Wait(); });
  pool.enqueue([&] { third_done.Notify(); });
  gate.AwaitWaiters(2);
  EXPECT_EQ(pool.threads(), 2);
  EXPECT_FALSE(third_done.HasBeenNotified());  // queued: both threads are held
  gate.Open();
  third_done.WaitForNotification();
  EXPECT_EQ(pool.threads(), 2);
}

}  // namespace
}  // namespace lcache::internal
