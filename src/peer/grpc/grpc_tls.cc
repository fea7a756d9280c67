#include "peer/grpc/grpc_tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <fstream>
#include <iterator>
#include <memory>
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

// How often gRPC's watcher looks at the server's files.
constexpr unsigned int kRefreshSeconds = 5;

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
  absl::StatusOr<Pems> pems = ReadPems(tls);
  if (!pems.ok()) return pems.status();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = pems->ca;  // empty: gRPC's default roots
  options.pem_private_key = pems->key;
  options.pem_cert_chain = pems->cert;
  return grpc::SslCredentials(options);
}

}  // namespace lcache::internal
