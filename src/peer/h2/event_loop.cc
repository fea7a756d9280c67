#include "peer/h2/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include "peer/h2/tls.h"

namespace lcache::internal {

EventLoop::EventLoop() {
  base_ = event_base_new();
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (base_ == nullptr || wake_fd_ < 0) return;
  wake_event_ = event_new(base_, wake_fd_, EV_READ | EV_PERSIST, &EventLoop::OnWake, this);
  if (wake_event_ != nullptr) event_add(wake_event_, nullptr);
}

EventLoop::~EventLoop() {
  Stop();
  if (wake_event_ != nullptr) event_free(wake_event_);
  if (wake_fd_ >= 0) close(wake_fd_);
  if (base_ != nullptr) event_base_free(base_);
}

void EventLoop::Start() {
  // EVLOOP_NO_EXIT_ON_EMPTY: the wake event keeps it alive anyway; Stop ends it.
  thread_ = std::thread([this] {
    BlockSigpipeInThisThread();  // its TLS connections write with OpenSSL
    event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
  });
}

void EventLoop::Stop() {
  if (thread_.joinable()) {
    Post([this] { event_base_loopbreak(base_); });
    thread_.join();
  }
  // Tasks still queued, and any posted from now on, are dropped: they may
  // hold what owns this loop (a reply holding its server loop), which would
  // otherwise never be freed.
  std::vector<std::function<void()>> dropped;
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    dropped.swap(tasks_);
  }
}

void EventLoop::Post(std::function<void()> task) {
  // After Stop, the task is dropped: last, once the lock is released, and
  // nothing of this loop is touched after it (the task may own the loop).
  std::function<void()> dropped;
  bool was_empty = false;
  {
    std::lock_guard lock(mu_);
    if (stopped_) {
      dropped = std::move(task);
    } else {
      was_empty = tasks_.empty();
      tasks_.push_back(std::move(task));
    }
  }
  if (dropped) return;
  // One wake-up per batch: the loop takes the whole queue when it wakes.
  if (was_empty) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
  }
}

void EventLoop::OnWake(evutil_socket_t, short, void* self) {
  auto* loop = static_cast<EventLoop*>(self);
  // Reset the eventfd before taking the tasks: a task posted after the swap
  // finds the queue empty and writes the eventfd again.
  uint64_t n;
  (void)!read(loop->wake_fd_, &n, sizeof n);
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(loop->mu_);
    tasks.swap(loop->tasks_);
  }
  for (auto& task : tasks) task();
}

}  // namespace lcache::internal
