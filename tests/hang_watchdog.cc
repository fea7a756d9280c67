// A watchdog linked into every test binary: a test process that is still
// running after LCACHE_TEST_WATCHDOG_SECONDS (default 270, under CTest's
// 300-second timeout) prints the test it is in and every thread's stack,
// then aborts. A hang that CTest would only report as "Timeout" (as a CI
// run once did, with no way to tell where) then says where it is.
//
// Stacks are taken by each thread itself: the watchdog sends one thread at a
// time a signal whose handler writes backtrace() to stderr, and waits for it
// (up to a second) before the next, so that the stacks do not interleave.
// Names come from the dynamic symbol table (test binaries export theirs).

#include <dirent.h>
#include <execinfo.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace {

const int kStackSignal = SIGRTMIN + 3;  // unused by gRPC, abseil and the sanitizers
std::atomic<bool> stack_written{false};

// The test being run, for the report. Never freed: the watchdog thread may
// read it while the process exits.
struct Current {
  std::mutex mu;
  std::string name = "(before the first test)";
};
Current* const current = new Current;

void WriteAll(const char* text) {
  for (size_t n = std::strlen(text); n > 0;) {
    const ssize_t w = write(STDERR_FILENO, text, n);
    if (w <= 0) return;
    text += w;
    n -= static_cast<size_t>(w);
  }
}

// Async-signal-safe enough: backtrace() was called once before (it loads
// libgcc then), and backtrace_symbols_fd writes without allocating.
void WriteStack(int) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  char header[64];
  std::snprintf(header, sizeof header, "--- thread %ld\n", static_cast<long>(syscall(SYS_gettid)));
  WriteAll(header);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  stack_written.store(true, std::memory_order_release);
}

class Watchdog final : public ::testing::EmptyTestEventListener {
 public:
  Watchdog() {
    const char* env = std::getenv("LCACHE_TEST_WATCHDOG_SECONDS");
    limit_ = std::chrono::seconds(env != nullptr ? std::atoi(env) : 270);
    if (limit_.count() <= 0) return;  // 0 turns it off
    void* warm[1];
    backtrace(warm, 1);
    struct sigaction sa {};
    sa.sa_handler = WriteStack;
    sa.sa_flags = SA_RESTART;
    sigaction(kStackSignal, &sa, nullptr);
    std::thread([limit = limit_] { Watch(limit); }).detach();
  }

  void OnTestStart(const ::testing::TestInfo& info) override {
    std::lock_guard lock(current->mu);
    current->name = std::string(info.test_suite_name()) + "." + info.name();
  }
  void OnTestEnd(const ::testing::TestInfo&) override {
    std::lock_guard lock(current->mu);
    current->name = "(between tests)";
  }

 private:
  // Waits out the limit (a process that ends first takes the detached
  // thread with it), then reports and aborts.
  static void Watch(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_until(deadline);  // a timer, not synchronisation
    }
    {
      std::lock_guard lock(current->mu);
      std::fprintf(stderr, "\nwatchdog: still running after %lld s, in %s; thread stacks:\n",
                   static_cast<long long>(limit.count()), current->name.c_str());
    }
    DumpOtherThreads();
    std::abort();
  }

  static void DumpOtherThreads() {
    const long self = syscall(SYS_gettid);
    DIR* dir = opendir("/proc/self/task");
    if (dir == nullptr) return;
    while (dirent* d = readdir(dir)) {
      const long tid = std::atol(d->d_name);
      if (tid <= 0 || tid == self) continue;
      stack_written.store(false, std::memory_order_relaxed);
      if (syscall(SYS_tgkill, getpid(), tid, kStackSignal) != 0) continue;
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (!stack_written.load(std::memory_order_acquire) &&
             std::chrono::steady_clock::now() < until) {
        std::this_thread::yield();
      }
      if (!stack_written.load(std::memory_order_acquire)) {
        std::fprintf(stderr, "--- thread %ld: no answer within 1 s\n", tid);
      }
    }
    closedir(dir);
  }

  std::chrono::seconds limit_;
};

// Registered before main: gtest_main's RUN_ALL_TESTS then reports to it.
[[maybe_unused]] const bool registered = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new Watchdog());
  return true;
}();

}  // namespace
