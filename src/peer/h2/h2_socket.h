// The plumbing between a non-blocking socket and an nghttp2 session that the
// lean transport's server and client share: feed what the socket has to the
// session, and write what the session has to send.

#ifndef LCACHE_SRC_PEER_H2_H2_SOCKET_H_
#define LCACHE_SRC_PEER_H2_H2_SOCKET_H_

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <string>

namespace lcache::internal {

// Reads what `fd` has now and hands it to `session` (whose callbacks run
// inside). False on EOF, a socket error or an HTTP/2 protocol error.
// REQUIRES: the callbacks do not delete `session`.
bool ReadIntoSession(int fd, nghttp2_session* session);

enum class WriteResult {
  kWritten,  // all out: nothing pending
  kBlocked,  // the socket is full: wait for it to be writable, then call again
  kFailed,   // a socket or HTTP/2 error: close the connection
};

// Appends what `session` has to send to `*pending` and writes `*pending` from
// `*offset` on, as far as the socket takes it.
WriteResult WriteFromSession(int fd, nghttp2_session* session, std::string* pending,
                             size_t* offset);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_H2_H2_SOCKET_H_
