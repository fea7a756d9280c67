// LoadExecutor: the bounded pool of threads on which a peer server runs
// loads (misses), so that a slow getter holds a load thread, never an I/O
// thread, and cannot grow a queue without bound.
//
// Thread-safety: TrySubmit from any thread; Stop from one.

#ifndef LCACHE_SRC_PEER_LOAD_EXECUTOR_H_
#define LCACHE_SRC_PEER_LOAD_EXECUTOR_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace lcache::internal {

// Runs loads on a fixed set of threads. Accepts a task while the tasks
// waiting for a thread stay within `max_queued` beyond the idle threads, and
// refuses it otherwise, so a slow getter cannot grow the queue without bound.
class LoadExecutor {
 public:
  LoadExecutor(int threads, int max_queued);
  ~LoadExecutor();

  // False, not running the task, when the queue is full; `*queued` then says
  // how many tasks were waiting.
  bool TrySubmit(std::function<void()> task, size_t* queued);

  // Runs the tasks already queued, then joins the threads. Idempotent.
  void Stop();

 private:
  void Work();

  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  size_t running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_LOAD_EXECUTOR_H_
