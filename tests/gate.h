// Gate: holds the threads that Wait() on it until the test opens it, and
// tells the test how many are waiting. For getters that must block at a
// known point. std synchronisation, so that TSan sees the hand-offs.

#ifndef LCACHE_TESTS_GATE_H_
#define LCACHE_TESTS_GATE_H_

#include <condition_variable>
#include <mutex>

namespace lcache::testing {

class Gate {
 public:
  void Wait() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
  }
  // Returns once at least `n` threads have called Wait (open or not).
  void AwaitWaiters(int n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return waiting_ >= n; });
  }
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

}  // namespace lcache::testing

#endif  // LCACHE_TESTS_GATE_H_
