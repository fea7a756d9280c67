// The admin listener's threads (docs/SECURITY.md). cpp-httplib gives each
// connection a thread for as long as it lasts and bounds each read, not a
// request: a client that sends a byte just within every read timeout
// (slowloris) holds its thread, and with httplib's fixed pool 20 such
// clients starved /healthz. Here threads are started as connections need
// them, up to a maximum (beyond it connections wait to be served): slow
// clients take threads of their own, not the one a probe needs. Threads
// started stay (a few hundred KB each, mostly untouched stack).

#ifndef LCACHE_SRC_NODE_ADMIN_THREAD_POOL_H_
#define LCACHE_SRC_NODE_ADMIN_THREAD_POOL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "httplib.h"

namespace lcache::internal {

class ElasticThreadPool final : public httplib::TaskQueue {
 public:
  explicit ElasticThreadPool(int max_threads) : max_threads_(max_threads) {}
  ~ElasticThreadPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then joins every thread.
  void shutdown() override;

  int threads() const;
  // Threads waiting for a job.
  int idle() const;

 private:
  void Work();

  const int max_threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  int idle_ = 0;
  bool shut_down_ = false;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_NODE_ADMIN_THREAD_POOL_H_
