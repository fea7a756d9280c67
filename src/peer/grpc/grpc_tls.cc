#include "peer/grpc/grpc_tls.h"

#include <fstream>
#include <iterator>
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

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcServerCredentials(
    const TlsOptions& tls) {
  absl::StatusOr<std::string> cert = ReadPem(tls.cert_file, "the certificate");
  absl::StatusOr<std::string> key = ReadPem(tls.key_file, "the key");
  absl::StatusOr<std::string> ca = ReadPem(tls.ca_file, "the CA");
  for (const auto* s : {&cert, &key, &ca}) {
    if (!s->ok()) return s->status();
  }
  if (cert->empty() || key->empty()) {
    return absl::InvalidArgumentError("lcache: TLS: a server needs a certificate and a key");
  }
  grpc::SslServerCredentialsOptions options;
  switch (tls.client_auth) {
    case TlsOptions::ClientAuth::kNone:
      options.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
      break;
    case TlsOptions::ClientAuth::kRequest:
      options.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
      break;
    case TlsOptions::ClientAuth::kRequire:
      options.client_certificate_request =
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
      break;
  }
  options.pem_root_certs = *ca;
  options.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> GrpcChannelCredentials(
    const TlsOptions& tls) {
  absl::StatusOr<std::string> cert = ReadPem(tls.cert_file, "the certificate");
  absl::StatusOr<std::string> key = ReadPem(tls.key_file, "the key");
  absl::StatusOr<std::string> ca = ReadPem(tls.ca_file, "the CA");
  for (const auto* s : {&cert, &key, &ca}) {
    if (!s->ok()) return s->status();
  }
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = *ca;  // empty: gRPC's default roots
  options.pem_private_key = *key;
  options.pem_cert_chain = *cert;
  return grpc::SslCredentials(options);
}

}  // namespace lcache::internal
