#include "peer/h2/h2_socket.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace lcache::internal {

bool ReadIntoSession(int fd, nghttp2_session* session) {
  char buf[16 << 10];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      if (nghttp2_session_mem_recv(session, reinterpret_cast<const uint8_t*>(buf),
                                   static_cast<size_t>(n)) < 0) {
        return false;
      }
      if (static_cast<size_t>(n) < sizeof buf) return true;  // drained, most likely
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

WriteResult WriteFromSession(int fd, nghttp2_session* session, std::string* pending,
                             size_t* offset) {
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
