#include "peer/grpc/grpc_tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"

namespace lcache::internal {
namespace {

// The file's bytes; "" for no file; an error if it cannot be read or is empty.
absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  if (path.empty()) return std::string();
  std::ifstream file(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (!file.is_open() || bytes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("lcache: TLS: cannot read ", what, " \"", path, "\""));
  }
  return bytes;
}

struct Pems {
  std::string cert, key, ca;  // "" for a file not given
};

absl::StatusOr<Pems> ReadPems(const TlsOptions& tls) {
  absl::StatusOr<std::string> cert = ReadPem(tls.cert_file, "the certificate");
  absl::StatusOr<std::string> key = ReadPem(tls.key_file, "the key");
  absl::StatusOr<std::string> ca = ReadPem(tls.ca_file, "the CA");
  for (const auto* s : {&cert, &key, &ca}) {
    if (!s->ok()) return s->status();
  }
  return Pems{*std::move(cert), *std::move(key), *std::move(ca)};
}

// How often gRPC's watchers look at the files (the lean transport looks at
// most once a second too).
constexpr unsigned int kRefreshSeconds = 1;

// A watcher of `tls`'s files, shared by every channel that uses them: each
// watcher has a thread of its own, and a node has a channel per peer. Kept
// for the life of the process (gRPC core holds its own reference to the
// watcher's C provider from each credentials; our C++ handle must live for a
// later channel to find it): one per set of files, and a node has one set.
std::shared_ptr<grpc::experimental::FileWatcherCertificateProvider> SharedWatcher(
    const TlsOptions& tls) {
  using Watcher = grpc::experimental::FileWatcherCertificateProvider;
  static std::mutex mu;
  static auto* const watchers = new std::map<std::string, std::shared_ptr<Watcher>>();
  const std::string files = absl::StrCat(tls.cert_file, "\n", tls.key_file, "\n", tls.ca_file);
  std::lock_guard lock(mu);
  std::shared_ptr<Watcher>& watcher = (*watchers)[files];
  if (watcher == nullptr) {
    watcher = tls.cert_file.empty() ? std::make_shared<Watcher>(tls.ca_file, kRefreshSeconds)
                                    : std::make_shared<Watcher>(tls.key_file, tls.cert_file,
                                                                tls.ca_file, kRefreshSeconds);
  }
  return watcher;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcServerCredentials(
    const TlsOptions& tls) {
  // Read once here for a clear error at start; gRPC's file watcher then
  // reads them again every kRefreshSeconds (and keeps the previous ones
  // when new ones do not load).
  absl::StatusOr<Pems> pems = ReadPems(tls);
  if (!pems.ok()) return pems.status();
  if (pems->cert.empty() || pems->key.empty()) {
    return absl::InvalidArgumentError("lcache: TLS: a server needs a certificate and a key");
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file, tls.cert_file, tls.ca_file, kRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!tls.ca_file.empty()) options.watch_root_certs();
  switch (tls.client_auth) {
    case TlsOptions::ClientAuth::kNone:
      options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
      break;
    case TlsOptions::ClientAuth::kRequest:
      options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
      break;
    case TlsOptions::ClientAuth::kRequire:
      options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      break;
  }
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> GrpcChannelCredentials(
    const TlsOptions& tls) {
  // Read here for a clear error now; gRPC's watcher reads them from then on.
  absl::StatusOr<Pems> pems = ReadPems(tls);
  if (!pems.ok()) return pems.status();
  if (tls.cert_file.empty() && tls.ca_file.empty()) {
    return grpc::SslCredentials({});  // the system's CAs, and nothing to watch
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(SharedWatcher(tls));
  if (!tls.cert_file.empty()) options.watch_identity_key_cert_pairs();
  if (!tls.ca_file.empty()) options.watch_root_certs();  // else the system's CAs
  // The chain is verified at the handshake, and the peer's name (the host
  // of its address) against the certificate's before each call, as
  // SslCredentials does.
  options.set_verify_server_certs(true);
  options.set_check_call_host(true);
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace lcache::internal
