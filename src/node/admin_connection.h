// One admin HTTP connection as cpp-httplib reads and writes it
// (httplib::Stream), in plaintext or TLS, with deadlines for the whole
// request and the whole response.
//
// Why: httplib's own stream bounds each read (a client that sends a byte
// just within every read timeout keeps its connection, and its thread, for
// as long as it likes: a slowloris), and speaks TLS only through its
// SSLServer, which would not share the peer port's certificate reloading.
// Here the socket is non-blocking and every wait is bounded twice: by the
// idle timeout (no byte for that long) and by one deadline for all of the
// request (TLS handshake, headers and body) counted from when the
// connection is taken up, then one for all of the response counted from its
// first byte. A client that misses either is cut off.
//
// Not thread-safe: one connection, one thread (httplib's model).

#ifndef LCACHE_SRC_NODE_ADMIN_CONNECTION_H_
#define LCACHE_SRC_NODE_ADMIN_CONNECTION_H_

#include <openssl/ssl.h>
#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "httplib.h"

namespace lcache::internal {

class AdminConnection final : public httplib::Stream {
 public:
  struct Timeouts {
    absl::Duration idle;      // the longest wait for one byte to move
    absl::Duration request;   // all of the request, TLS handshake included
    absl::Duration response;  // all of the response, from its first byte
  };

  // Takes `fd` (an accepted socket; made non-blocking) and `ssl` (null:
  // plaintext; else an SSL object on `fd` in accept state), closing both
  // when destroyed.
  AdminConnection(int fd, SSL* ssl, Timeouts timeouts);
  ~AdminConnection() override;
  AdminConnection(const AdminConnection&) = delete;
  AdminConnection& operator=(const AdminConnection&) = delete;

  // Completes the TLS handshake within the request's deadline; true at once
  // without TLS. On false, `error()` says why.
  bool Handshake();
  // Whether the client showed a certificate the CA signed (TLS only).
  bool PeerVerified() const;
  // The client's "ip:port", for log lines.
  std::string RemoteAddress() const;
  // Why the connection failed: "", kTimedOut, a socket error, or what TLS
  // said.
  const std::string& error() const { return error_; }
  static constexpr char kTimedOut[] = "timed out";

  // httplib::Stream.
  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override { return fd_; }

 private:
  // Waits until the socket is ready for `events` (POLLIN, POLLOUT), at most
  // until `deadline` and the idle timeout; false if it is not by then.
  bool Await(short events, absl::Time deadline) const;
  // One read into buffer_; bytes read, 0 at the end, -1 on an error.
  ssize_t Fill();
  // How to go on after an SSL call returned `ret`: wait for the socket
  // (true) or give up (false, error_ set).
  bool AwaitTls(int ret, absl::Time deadline);
  // The deadline of a write of `bytes`; the first write of the response
  // (not an interim 1xx) starts the response's.
  absl::Time ResponseDeadline(std::string_view bytes);
  // Marks the connection failed, for `why`; returns false.
  bool Fail(std::string why);

  const int fd_;
  SSL* const ssl_;
  const Timeouts timeouts_;
  const absl::Time request_deadline_;
  absl::Time response_deadline_ = absl::InfiniteFuture();  // set by the first write
  bool response_started_ = false;
  bool failed_ = false;  // no close_notify then
  std::string error_;
  char buffer_[4096];
  size_t begin_ = 0;  // unread bytes: buffer_[begin_, end_)
  size_t end_ = 0;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_NODE_ADMIN_CONNECTION_H_
