// A TCP proxy on 127.0.0.1 for tests: it forwards each connection to a port
// on 127.0.0.1 and can delay what comes back (a slow link), keeping the
// bytes in order. The delay is the link's, not a wait for a condition.

#ifndef LCACHE_TESTS_DELAY_PROXY_H_
#define LCACHE_TESTS_DELAY_PROXY_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/time/time.h"

namespace lcache::testing {

class DelayProxy {
 public:
  explicit DelayProxy(int upstream_port) : upstream_port_(upstream_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = Loopback(0);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(listen_fd_, 16);
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    accept_thread_ = std::thread([this] { Accept(); });
  }

  ~DelayProxy() {
    stopping_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();  // no more pumps from here on
    {
      std::lock_guard lock(mu_);
      for (int fd : fds_) shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& t : pumps_) t.join();
    close(listen_fd_);
    for (int fd : fds_) close(fd);
  }

  int port() const { return port_; }
  // What the upstream sends from now on reaches the client `delay` later.
  void SetDelay(absl::Duration delay) { delay_us_ = absl::ToInt64Microseconds(delay); }

 private:
  static sockaddr_in Loopback(int port) {
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
  }

  void Accept() {
    while (!stopping_) {
      const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        if (errno == ECONNABORTED || errno == EINTR) continue;
        return;  // shut down
      }
      const int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr = Loopback(upstream_port_);
      if (connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(client);
        close(upstream);
        continue;
      }
      std::lock_guard lock(mu_);
      fds_.push_back(client);
      fds_.push_back(upstream);
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream, false); });
      pumps_.emplace_back([this, client, upstream] { Pump(upstream, client, true); });
    }
  }

  // Copies `from` to `to` until either ends; `delayed`: each chunk is held
  // for the delay before it is sent on, one after the other (so chunks that
  // queue meanwhile wait longer, as on a saturated slow link).
  void Pump(int from, int to, bool delayed) {
    char buf[16 << 10];
    for (;;) {
      const ssize_t n = read(from, buf, sizeof buf);
      if (n <= 0) break;
      if (delayed) {
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us_.load()));
      }
      if (send(to, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
    }
    shutdown(to, SHUT_WR);
  }

  const int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> delay_us_{0};
  std::mutex mu_;
  std::vector<int> fds_;            // GUARDED_BY(mu_)
  std::vector<std::thread> pumps_;  // GUARDED_BY(mu_) while accept_thread_ runs
  std::thread accept_thread_;
};

}  // namespace lcache::testing

#endif  // LCACHE_TESTS_DELAY_PROXY_H_
