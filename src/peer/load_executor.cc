#include "peer/load_executor.h"

#include <utility>

namespace lcache::internal {

LoadExecutor::LoadExecutor(int threads, int max_queued)
    : max_queued_(static_cast<size_t>(max_queued)) {
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

LoadExecutor::~LoadExecutor() { Stop(); }

bool LoadExecutor::TrySubmit(std::function<void()> task, size_t* queued) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t idle = threads_.size() - running_;
    if (stopping_ || tasks_.size() >= max_queued_ + idle) {
      *queued = tasks_.size();
      return false;
    }
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void LoadExecutor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void LoadExecutor::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
    if (tasks_.empty()) return;  // stopping, and nothing left to run
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    ++running_;
    lock.unlock();
    task();
    lock.lock();
    --running_;
  }
}

}  // namespace lcache::internal
