#include "peer/h2/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <sys/stat.h>

#include <csignal>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace lcache::internal {
namespace {

constexpr absl::Duration kCheckFilesEvery = absl::Seconds(1);
constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

std::string OpenSslErrors() {
  std::string text;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    absl::StrAppend(&text, text.empty() ? "" : "; ",
                    ERR_reason_error_string(e) != nullptr ? ERR_reason_error_string(e) : buf);
  }
  return text.empty() ? "unknown error" : text;
}

absl::Status FileError(const std::string& what, const std::string& path) {
  return absl::InvalidArgumentError(
      absl::StrCat("lcache: TLS: cannot load ", what, " \"", path, "\": ", OpenSslErrors()));
}

// The server's answer to the client's ALPN list: h2 (http/1.1 for an
// HTTP/1.1 server, `http11` not null), or no ALPN at all (a client that
// sends none speaks HTTP/2 by prior knowledge, as gRPC's may; or HTTP/1.1).
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void* http11) {
  const unsigned char* ours = http11 != nullptr ? kAlpnHttp11 : kAlpnH2;
  const unsigned int ours_size = http11 != nullptr ? sizeof kAlpnHttp11 : sizeof kAlpnH2;
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, ours, ours_size, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

TlsContext::TlsContext(Side side, TlsOptions options, std::function<void(const std::string&)> warn)
    : side_(side), options_(std::move(options)), warn_(std::move(warn)) {}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

absl::StatusOr<std::shared_ptr<TlsContext>> TlsContext::Create(
    Side side, TlsOptions options, std::function<void(const std::string&)> warn) {
  if (side != Side::kClient && (options.cert_file.empty() || options.key_file.empty())) {
    return absl::InvalidArgumentError("lcache: TLS: a server needs a certificate and a key");
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "lcache: TLS: a certificate needs its key, and a key its "
        "certificate");
  }
  if (options.client_auth != TlsOptions::ClientAuth::kNone && options.ca_file.empty()) {
    return absl::InvalidArgumentError(
        "lcache: TLS: verifying clients' certificates needs the CA that signs them");
  }
  std::shared_ptr<TlsContext> context(new TlsContext(side, std::move(options), std::move(warn)));
  context->stamps_ = context->FileStamps();
  absl::StatusOr<SSL_CTX*> ctx = context->Load();
  if (!ctx.ok()) return ctx.status();
  context->ctx_ = *ctx;
  context->checked_ = absl::Now();
  return context;
}

absl::StatusOr<SSL_CTX*> TlsContext::Load() const {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(side_ != Side::kClient ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return absl::InternalError("lcache: TLS: " + OpenSslErrors());
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> owned(ctx, &SSL_CTX_free);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // A write may be retried from a buffer that has grown or moved (the
  // connection's pending bytes), and may take part of it.
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_RELEASE_BUFFERS);
  if (!options_.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, options_.cert_file.c_str()) != 1) {
      return FileError("the certificate", options_.cert_file);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, options_.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return FileError("the key", options_.key_file);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("lcache: TLS: the key \"", options_.key_file,
                                                     "\" is not the certificate's (\"",
                                                     options_.cert_file, "\")"));
    }
  }
  if (!options_.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, options_.ca_file.c_str(), nullptr) != 1) {
      return FileError("the CA", options_.ca_file);
    }
  } else if (side_ == Side::kClient) {
    SSL_CTX_set_default_verify_paths(ctx);
  }
  if (side_ != Side::kClient) {
    static char http11;  // any non-null pointer: HTTP/1.1
    SSL_CTX_set_alpn_select_cb(ctx, &SelectAlpn, side_ == Side::kHttp1Server ? &http11 : nullptr);
    switch (options_.client_auth) {
      case TlsOptions::ClientAuth::kNone:
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
        break;
      case TlsOptions::ClientAuth::kRequest:
        // Asked, and verified if shown; a failed verification is not fatal
        // here (PeerVerified says no), so such a client is served as a client.
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
        break;
      case TlsOptions::ClientAuth::kRequire:
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        break;
    }
    if (!options_.ca_file.empty()) {
      SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(options_.ca_file.c_str()));
    }
    // Resumed sessions skip the certificate exchange (tickets: no state here).
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    static constexpr unsigned char kSessionContext[] = "lcache";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_set_alpn_protos(ctx, kAlpnH2, sizeof kAlpnH2) != 0) {
      return absl::InternalError("lcache: TLS: cannot set ALPN");
    }
  }
  return owned.release();
}

std::string TlsContext::FileStamps() const {
  std::string stamps;
  for (const std::string* path : {&options_.cert_file, &options_.key_file, &options_.ca_file}) {
    if (path->empty()) continue;
    struct stat st = {};
    if (stat(path->c_str(), &st) != 0) return "";
    absl::StrAppend(&stamps, st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, "/", st.st_size, "/",
                    st.st_ino, ";");
  }
  return stamps;
}

void TlsContext::ReloadIfChanged() {
  const absl::Time now = absl::Now();
  {
    std::lock_guard lock(mu_);
    if (now - checked_ < kCheckFilesEvery) return;
    checked_ = now;
  }
  const std::string stamps = FileStamps();
  {
    std::lock_guard lock(mu_);
    // Missing files (being replaced) are looked at again next time.
    if (stamps.empty() || stamps == stamps_) return;
    stamps_ = stamps;
  }
  if (absl::Status s = Reload(); !s.ok() && warn_ != nullptr) {
    warn_(absl::StrCat(s.message(), "; still using the previous files"));
  }
}

absl::Status TlsContext::Reload() {
  absl::StatusOr<SSL_CTX*> ctx = Load();
  if (!ctx.ok()) return ctx.status();
  std::lock_guard lock(mu_);
  SSL_CTX_free(ctx_);  // connections made from it hold references of their own
  ctx_ = *ctx;
  stamps_ = FileStamps();
  return absl::OkStatus();
}

SSL* TlsContext::NewSsl(int fd, const std::string& host) {
  ReloadIfChanged();
  SSL* ssl = nullptr;
  {
    std::lock_guard lock(mu_);
    ssl = SSL_new(ctx_);
  }
  if (ssl == nullptr) return nullptr;
  if (SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    return nullptr;
  }
  if (side_ != Side::kClient) {
    SSL_set_accept_state(ssl);
    return ssl;
  }
  // The name to verify: an IP address goes in the IP SANs, a DNS name in the
  // DNS SANs (and SNI, which takes names only).
  in6_addr ip = {};
  const bool is_ip =
      inet_pton(AF_INET, host.c_str(), &ip) == 1 || inet_pton(AF_INET6, host.c_str(), &ip) == 1;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  const bool ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) == 1
                        : SSL_set1_host(ssl, host.c_str()) == 1 &&
                              SSL_set_tlsext_host_name(ssl, host.c_str()) == 1;
  if (!ok) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_connect_state(ssl);
  return ssl;
}

bool TlsContext::PeerVerified(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  return cert != nullptr && SSL_get_verify_result(ssl) == X509_V_OK;
}

void BlockSigpipeInThisThread() {
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
}

std::string TlsErrorText(SSL* ssl, int ret) {
  const int error = SSL_get_error(ssl, ret);
  std::string text;
  if (error == SSL_ERROR_SSL) {
    text = OpenSslErrors();
    if (const long verify = SSL_get_verify_result(ssl); verify != X509_V_OK) {
      absl::StrAppend(&text, " (", X509_verify_cert_error_string(verify), ")");
    }
  } else if (error == SSL_ERROR_SYSCALL) {
    text = ret == 0 ? "connection closed during the TLS exchange" : "socket error";
    ERR_clear_error();
  } else if (error == SSL_ERROR_ZERO_RETURN) {
    text = "closed by the other side";
  } else {
    text = absl::StrCat("OpenSSL error ", error);
    ERR_clear_error();
  }
  return text;
}

}  // namespace lcache::internal
