#include "node/admin_thread_pool.h"

#include <utility>

namespace lcache::internal {

void ElasticThreadPool::enqueue(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  if (shut_down_) return;
  jobs_.push_back(std::move(fn));
  // Each idle thread takes one job when it wakes (idle_ drops then, not at
  // notify): a job beyond the idle threads needs a thread of its own, or it
  // would wait behind another connection's whole request.
  if (jobs_.size() > static_cast<size_t>(idle_) &&
      static_cast<int>(threads_.size()) < max_threads_) {
    threads_.emplace_back([this] { Work(); });
  } else {
    cv_.notify_one();
  }
}

void ElasticThreadPool::shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    shut_down_ = true;
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (std::thread& t : threads) t.join();
}

int ElasticThreadPool::threads() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(threads_.size());
}

int ElasticThreadPool::idle() const {
  std::lock_guard lock(mu_);
  return idle_;
}

void ElasticThreadPool::Work() {
  std::unique_lock lock(mu_);
  while (true) {
    ++idle_;
    cv_.wait(lock, [this] { return !jobs_.empty() || shut_down_; });
    --idle_;
    if (jobs_.empty()) return;  // shut down, nothing left
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

}  // namespace lcache::internal
