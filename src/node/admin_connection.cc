#include "node/admin_connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "peer/h2/tls.h"

namespace lcache::internal {
namespace {

void IpAndPort(const sockaddr_storage& addr, std::string& ip, int& port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
    port = ntohs(a.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
    port = ntohs(a.sin6_port);
  }
  ip = text;
}

}  // namespace

AdminConnection::AdminConnection(int fd, SSL* ssl, Timeouts timeouts)
    : fd_(fd), ssl_(ssl), timeouts_(timeouts), request_deadline_(absl::Now() + timeouts.request) {
  fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
}

AdminConnection::~AdminConnection() {
  if (ssl_ != nullptr) {
    // close_notify, best effort, and only on a connection that has not
    // failed (OpenSSL forbids it after a fatal error). Nothing of this
    // connection may stay in the thread's error queue: the next connection
    // served by this thread would read it as its own.
    ERR_clear_error();
    if (!failed_ && SSL_is_init_finished(ssl_)) SSL_shutdown(ssl_);
    SSL_free(ssl_);
    ERR_clear_error();
  }
  shutdown(fd_, SHUT_RDWR);
  close(fd_);
}

bool AdminConnection::Await(short events, absl::Time deadline) const {
  for (;;) {
    const absl::Time now = absl::Now();
    const absl::Duration wait = std::min(deadline, now + timeouts_.idle) - now;
    if (wait <= absl::ZeroDuration()) return false;
    pollfd p{fd_, events, 0};
    // Rounded up: a wait of 0.4 ms must not become a busy poll of 0 ms.
    // At most INT_MAX ms (24 days) a turn: an infinite timeout must not
    // wrap to a negative one.
    const int ms = static_cast<int>(std::min<int64_t>(
        absl::ToInt64Milliseconds(wait + absl::Milliseconds(1) - absl::Nanoseconds(1)),
        std::numeric_limits<int>::max()));
    const int ready = poll(&p, 1, ms);
    if (ready > 0) return true;  // ready, or an error the next call reports
    if (ready == 0 || errno != EINTR) return false;
  }
}

bool AdminConnection::Fail(std::string why) {
  failed_ = true;
  error_ = std::move(why);
  return false;
}

bool AdminConnection::AwaitTls(int ret, absl::Time deadline) {
  const int error = SSL_get_error(ssl_, ret);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    if (Await(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return true;
    return Fail(kTimedOut);
  }
  return Fail(TlsErrorText(ssl_, ret));
}

bool AdminConnection::Handshake() {
  if (ssl_ == nullptr) return true;
  for (;;) {
    ERR_clear_error();  // SSL_get_error reads the queue
    const int ret = SSL_do_handshake(ssl_);
    if (ret == 1) return true;
    if (!AwaitTls(ret, request_deadline_)) return false;
  }
}

bool AdminConnection::PeerVerified() const {
  return ssl_ != nullptr && TlsContext::PeerVerified(ssl_);
}

ssize_t AdminConnection::Fill() {
  for (;;) {
    if (ssl_ != nullptr) {
      ERR_clear_error();
      const int n = SSL_read(ssl_, buffer_, sizeof buffer_);
      if (n > 0) return n;
      if (SSL_get_error(ssl_, n) == SSL_ERROR_ZERO_RETURN) return 0;
      if (!AwaitTls(n, request_deadline_)) return -1;
      continue;
    }
    const ssize_t n = recv(fd_, buffer_, sizeof buffer_, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      Fail(std::strerror(errno));
      return -1;
    }
    if (!Await(POLLIN, request_deadline_)) {
      Fail(kTimedOut);
      return -1;
    }
  }
}

bool AdminConnection::is_readable() const {
  return begin_ < end_ || (ssl_ != nullptr && SSL_has_pending(ssl_)) ||
         Await(POLLIN, request_deadline_);
}

bool AdminConnection::is_writable() const {
  return Await(POLLOUT, response_started_ ? response_deadline_ : absl::Now() + timeouts_.response);
}

ssize_t AdminConnection::read(char* ptr, size_t size) {
  if (begin_ == end_) {
    const ssize_t n = Fill();
    if (n <= 0) return n;
    begin_ = 0;
    end_ = static_cast<size_t>(n);
  }
  const size_t n = std::min(size, end_ - begin_);
  std::memcpy(ptr, buffer_ + begin_, n);
  begin_ += n;
  return static_cast<ssize_t>(n);
}

absl::Time AdminConnection::ResponseDeadline(std::string_view bytes) {
  if (response_started_) return response_deadline_;
  // An interim "100 Continue" is not the response: the body it asks for is
  // still the request's, under the request's deadline.
  if (bytes.starts_with("HTTP/1.1 1")) return request_deadline_;
  response_started_ = true;
  response_deadline_ = absl::Now() + timeouts_.response;
  return response_deadline_;
}

ssize_t AdminConnection::write(const char* ptr, size_t size) {
  const absl::Time deadline = ResponseDeadline(std::string_view(ptr, size));
  size_t written = 0;
  while (written < size) {
    if (ssl_ != nullptr) {
      ERR_clear_error();
      const int n = SSL_write(ssl_, ptr + written,
                              static_cast<int>(std::min<size_t>(size - written, 1 << 30)));
      if (n > 0) {
        written += static_cast<size_t>(n);
      } else if (!AwaitTls(n, deadline)) {
        return -1;
      }
      continue;
    }
    const ssize_t n = send(fd_, ptr + written, size - written, MSG_NOSIGNAL);
    if (n >= 0) {
      written += static_cast<size_t>(n);
    } else if (errno == EINTR) {
      continue;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      Fail(std::strerror(errno));
      return -1;
    } else if (!Await(POLLOUT, deadline)) {
      Fail(kTimedOut);
      return -1;
    }
  }
  return static_cast<ssize_t>(size);
}

std::string AdminConnection::RemoteAddress() const {
  std::string ip;
  int port = 0;
  get_remote_ip_and_port(ip, port);
  return absl::StrCat(ip, ":", port);
}

void AdminConnection::get_remote_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage addr = {};
  socklen_t len = sizeof addr;
  if (getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) IpAndPort(addr, ip, port);
}

void AdminConnection::get_local_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage addr = {};
  socklen_t len = sizeof addr;
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) IpAndPort(addr, ip, port);
}

}  // namespace lcache::internal
