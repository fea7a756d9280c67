// Test certificates, made with the openssl command in a temp dir: a CA
// ("ca") that signs a server certificate ("ca-server", for 127.0.0.1) and a
// client one ("ca-client"), and another CA ("other") with a certificate of
// its own ("other-stranger"). Files: NAME.pem and NAME.key.

#ifndef LCACHE_TESTS_TEST_CERTS_H_
#define LCACHE_TESTS_TEST_CERTS_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "lcache/peer_server.h"

namespace lcache::testing {

// A CA and two certificates it signs (server for 127.0.0.1, client), and a
// certificate of another CA.
class Certs {
 public:
  explicit Certs(const std::string& tag) {
    namespace fs = std::filesystem;
    dir_ = fs::temp_directory_path() / absl::StrCat("lcache-tls-", tag, "-", getpid());
    fs::create_directories(dir_);
    ok_ = MakeCa("ca") && Issue("ca", "server") && Issue("ca", "client") && MakeCa("other") &&
          Issue("other", "stranger");
  }
  ~Certs() { std::filesystem::remove_all(dir_); }

  bool ok() const { return ok_; }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  TlsOptions Server(TlsOptions::ClientAuth auth) const {
    return {.cert_file = Path("ca-server.pem"),
            .key_file = Path("ca-server.key"),
            .ca_file = Path("ca.pem"),
            .client_auth = auth};
  }
  TlsOptions Client(const std::string& who = "") const {
    TlsOptions tls{.ca_file = Path("ca.pem")};
    if (!who.empty()) {
      tls.cert_file = Path(who + ".pem");
      tls.key_file = Path(who + ".key");
    }
    return tls;
  }

 private:
  bool Run(const std::string& args) const {
    const std::string command =
        absl::StrCat("cd '", dir_.string(), "' && openssl ", args, " >/dev/null 2>&1");
    return std::system(command.c_str()) == 0;
  }
  bool MakeCa(const std::string& name) const {
    return Run(absl::StrCat("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ",
                            name, ".key -out ", name, ".pem -days 2 -subj /CN=", name));
  }
  bool Issue(const std::string& ca, const std::string& cn) const {
    const std::string base = absl::StrCat(ca, "-", cn);
    std::ofstream(dir_ / (base + ".ext")) << "subjectAltName=IP:127.0.0.1\n";
    return Run(absl::StrCat("req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ", base,
                            ".key -out ", base, ".csr -subj /CN=", cn)) &&
           Run(absl::StrCat("x509 -req -in ", base, ".csr -CA ", ca, ".pem -CAkey ", ca,
                            ".key -CAcreateserial -out ", base, ".pem -days 2 -extfile ", base,
                            ".ext"));
  }

  std::filesystem::path dir_;
  bool ok_ = false;
};

}  // namespace lcache::testing

#endif  // LCACHE_TESTS_TEST_CERTS_H_
