// EventLoop: one libevent event_base run by its own thread, and a way for
// other threads to hand it work (Post: a task queue and an eventfd). The
// lean transport's server and client are built on it: everything a loop
// owns is touched only by its thread, so the request path takes no lock.

#ifndef LCACHE_SRC_PEER_H2_EVENT_LOOP_H_
#define LCACHE_SRC_PEER_H2_EVENT_LOOP_H_

#include <event2/event.h>

#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace lcache::internal {

class EventLoop {
 public:
  EventLoop();
  // Stops the thread if it runs, then frees the base. Tasks still queued are
  // dropped unrun.
  ~EventLoop();

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // False if libevent or the eventfd could not be set up.
  bool ok() const { return base_ != nullptr && wake_event_ != nullptr; }
  event_base* base() const { return base_; }

  // Runs the loop on a new thread until Stop.
  void Start();
  // Ends the loop after the callback it is running and joins the thread;
  // tasks still queued are dropped unrun, and so are tasks posted from now
  // on. Any thread but the loop's own.
  void Stop();

  // Runs `task` on the loop's thread, soon; tasks run in the order posted.
  // Any thread. After Stop, `task` is destroyed unrun.
  void Post(std::function<void()> task);

  // Whether the caller is the loop's thread.
  bool InLoop() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  static void OnWake(evutil_socket_t, short, void* self);

  event_base* base_ = nullptr;
  int wake_fd_ = -1;
  event* wake_event_ = nullptr;
  std::thread thread_;

  std::mutex mu_;
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_H2_EVENT_LOOP_H_
