// TLS for the lean transport (TlsOptions, peer_server.h), on OpenSSL: the
// context a server or a client makes its connections' SSL objects from, and
// what went wrong, as text a log line can carry.
//
// A context re-reads its files when they change: NewSsl looks at their
// modification times at most once a second, and Reload() reads them now.
// New files that do not load (a bad PEM, a key that is not the
// certificate's) leave the previous ones in use and are reported through
// `warn` once per change. Connections keep the context they started with.
//
// Settings: TLS 1.2 and 1.3 only, no renegotiation, ALPN "h2" (gRPC's).
// A client verifies the server's certificate against the CA and the host of
// the address it dials (an IP address or a DNS name).

#ifndef LCACHE_SRC_PEER_H2_TLS_H_
#define LCACHE_SRC_PEER_H2_TLS_H_

#include <openssl/ssl.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/peer_server.h"

namespace lcache::internal {

class TlsContext {
 public:
  enum class Side {
    kServer,       // HTTP/2 (ALPN h2): the peer port
    kClient,       // HTTP/2: calls to peers
    kHttp1Server,  // HTTP/1.1 (ALPN http/1.1): the admin API
  };

  // InvalidArgument, naming the file and OpenSSL's reason, if the files do
  // not load.
  static absl::StatusOr<std::shared_ptr<TlsContext>> Create(
      Side side, TlsOptions options, std::function<void(const std::string&)> warn = nullptr);
  ~TlsContext();

  // An SSL object for the connected socket `fd` (server: accept state;
  // client: connect state, verifying `host`), or null if OpenSSL fails.
  // Any thread.
  SSL* NewSsl(int fd, const std::string& host = {});

  // Reads the files now; on an error the previous ones stay in use.
  absl::Status Reload();

  // Whether the connection's client showed a certificate the CA signed.
  static bool PeerVerified(SSL* ssl);

 private:
  TlsContext(Side side, TlsOptions options, std::function<void(const std::string&)> warn);
  absl::StatusOr<SSL_CTX*> Load() const;
  // The files' modification times, as one string ("" if one is missing).
  std::string FileStamps() const;
  void ReloadIfChanged();

  const Side side_;
  const TlsOptions options_;
  const std::function<void(const std::string&)> warn_;
  std::mutex mu_;
  SSL_CTX* ctx_ = nullptr;  // guarded by mu_; SSL objects hold their own reference
  std::string stamps_;      // of the files ctx_ (or the last failed attempt) read
  absl::Time checked_ = absl::InfinitePast();
};

// OpenSSL writes to its socket with write(2), which raises SIGPIPE when the
// other side has hung up: a process that does not ignore SIGPIPE (one that
// embeds the library; lcache-node without -http, whose httplib server would
// ignore it process-wide) would die of a client that closes its end in the
// middle of a response. Each thread that writes TLS calls this once; its
// writes then fail with EPIPE instead, as send(MSG_NOSIGNAL) does.
void BlockSigpipeInThisThread();

// What OpenSSL said about the failed call that returned `ret` on `ssl`
// (its error queue, then cleared), e.g. "certificate verify failed
// (self-signed certificate)" or "wrong version number".
std::string TlsErrorText(SSL* ssl, int ret);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_H2_TLS_H_
