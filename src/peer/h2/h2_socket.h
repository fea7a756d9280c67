// The plumbing between a non-blocking socket and an nghttp2 session that the
// lean transport's server and client share: feed what the socket has to the
// session, and write what the session has to send. With `ssl` (tls.h) the
// bytes go through TLS on the socket; the handshake happens inside the first
// reads and writes, as OpenSSL does it.

#ifndef LCACHE_SRC_PEER_H2_H2_SOCKET_H_
#define LCACHE_SRC_PEER_H2_H2_SOCKET_H_

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <cstddef>
#include <string>

namespace lcache::internal {

// Reads what `fd` has now and hands it to `session` (whose callbacks run
// inside). False on EOF, a socket, TLS or HTTP/2 protocol error; then
// `*error` (if not null) says what, for TLS errors.
// REQUIRES: the callbacks do not delete `session`.
bool ReadIntoSession(int fd, SSL* ssl, nghttp2_session* session, std::string* error = nullptr);

enum class WriteResult {
  kWritten,    // all out: nothing pending
  kBlocked,    // the socket is full: wait for it to be writable, then call again
  kWantsRead,  // TLS waits for the other side's handshake: call again after a read
  kFailed,     // a socket, TLS or HTTP/2 error: close the connection
};

// Appends what `session` has to send to `*pending` and writes `*pending` from
// `*offset` on, as far as the socket takes it.
WriteResult WriteFromSession(int fd, SSL* ssl, nghttp2_session* session, std::string* pending,
                             size_t* offset, std::string* error = nullptr);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_H2_H2_SOCKET_H_
