#include "peer/h2/h2_socket.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "peer/h2/tls.h"

namespace lcache::internal {
namespace {

bool Feed(nghttp2_session* session, const char* data, size_t n) {
  return nghttp2_session_mem_recv(session, reinterpret_cast<const uint8_t*>(data), n) >= 0;
}

bool ReadTls(SSL* ssl, nghttp2_session* session, std::string* error) {
  char buf[16 << 10];
  while (true) {
    const int n = SSL_read(ssl, buf, sizeof buf);
    if (n > 0) {
      if (!Feed(session, buf, static_cast<size_t>(n))) return false;
      // Bytes OpenSSL holds (decrypted, or read ahead) would not wake the
      // loop again, so they are read now; what is still in the socket
      // does (the read event is level-triggered), without a failing read
      // here first.
      if (static_cast<size_t>(n) < sizeof buf && SSL_has_pending(ssl) == 0) return true;
      continue;
    }
    const int reason = SSL_get_error(ssl, n);
    // WANT_WRITE: the handshake's next flight did not fit in the socket; the
    // write that follows every read sends it.
    if (reason == SSL_ERROR_WANT_READ || reason == SSL_ERROR_WANT_WRITE) return true;
    if (reason == SSL_ERROR_SYSCALL && errno == EINTR) continue;
    if (error != nullptr) *error = TlsErrorText(ssl, n);
    return false;
  }
}

}  // namespace

bool ReadIntoSession(int fd, SSL* ssl, nghttp2_session* session, std::string* error) {
  if (ssl != nullptr) return ReadTls(ssl, session, error);
  char buf[16 << 10];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      if (!Feed(session, buf, static_cast<size_t>(n))) return false;
      if (static_cast<size_t>(n) < sizeof buf) return true;  // drained, most likely
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

WriteResult WriteFromSession(int fd, SSL* ssl, nghttp2_session* session, std::string* pending,
                             size_t* offset, std::string* error) {
  // One send for everything nghttp2 has (many frames of many streams),
  // rather than a send per frame.
  while (true) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session, &data);
    if (n < 0) return WriteResult::kFailed;
    if (n == 0) break;
    pending->append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  while (*offset < pending->size()) {
    if (ssl != nullptr) {
      // A retry after WANT_* passes at least the bytes of the first try (the
      // buffer only grows), as OpenSSL requires; it may have moved
      // (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
      const int n =
          SSL_write(ssl, pending->data() + *offset,
                    static_cast<int>(std::min<size_t>(pending->size() - *offset, size_t{1} << 30)));
      if (n > 0) {
        *offset += static_cast<size_t>(n);
        continue;
      }
      const int reason = SSL_get_error(ssl, n);
      if (reason == SSL_ERROR_WANT_WRITE) return WriteResult::kBlocked;
      if (reason == SSL_ERROR_WANT_READ) return WriteResult::kWantsRead;
      if (reason == SSL_ERROR_SYSCALL && errno == EINTR) continue;
      if (error != nullptr) *error = TlsErrorText(ssl, n);
      return WriteResult::kFailed;
    }
    const ssize_t n = send(fd, pending->data() + *offset, pending->size() - *offset, MSG_NOSIGNAL);
    if (n > 0) {
      *offset += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return WriteResult::kBlocked;
    } else {
      return WriteResult::kFailed;
    }
  }
  pending->clear();
  *offset = 0;
  return WriteResult::kWritten;
}

}  // namespace lcache::internal
