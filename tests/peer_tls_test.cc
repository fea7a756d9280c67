// TLS on the peer protocol, in process, on both transports (so that the
// sanitizer builds run the OpenSSL paths): certificates made with the openssl
// command in a temp dir, a real server on 127.0.0.1 and a real client.
// tests/tls_test.py runs the same over real nodes.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/group.h"
#include "lcache/grpc_peer.h"
#include "lcache/h2_peer.h"
#include "lcache/peer_server.h"
#include "test_certs.h"

namespace lcache {
namespace {

using ::lcache::testing::Certs;
using ::testing::HasSubstr;

namespace fs = std::filesystem;

enum class Transport { kGrpc, kLean };

class PeerTlsTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(certs_.ok()) << "openssl could not make the test certificates";
    ASSERT_TRUE(registry_
                    .NewGroup({.name = "scores",
                               .getter = [](std::string_view key) -> absl::StatusOr<Loaded> {
                                 if (key == "Tom") return ByteView::Copy("630");
                                 return KeyNotFoundError();
                               }})
                    .ok());
  }

  void Serve(std::optional<TlsOptions> tls) {
    PeerServerOptions options{.address = "127.0.0.1:0", .registry = &registry_, .tls = tls};
    absl::StatusOr<std::unique_ptr<PeerServer>> s =
        GetParam() == Transport::kGrpc ? StartGrpcPeerServer(options) : StartH2PeerServer(options);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    address_ = absl::StrCat("127.0.0.1:", server_->port());
  }

  absl::StatusOr<PeerValue> Get(std::optional<TlsOptions> tls, const std::string& key = "Tom") {
    const PeerClientOptions options{.timeout = absl::Seconds(2), .mark_forwarded = false};
    if (GetParam() == Transport::kGrpc) {
      return NewGrpcPeerGetter(address_, options, tls)->Get("scores", key);
    }
    absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create(1, tls);
    if (!client.ok()) return client.status();
    return (*client)->NewGetter(address_, options)->Get("scores", key);
  }

  // Made once (openssl takes a while), removed at exit.
  static Certs& certs() {
    static Certs certs("suite");
    return certs;
  }

  const Certs& certs_ = certs();
  GroupRegistry registry_;
  std::unique_ptr<PeerServer> server_;
  std::string address_;
};

TEST_P(PeerTlsTest, ServesOverTlsAndVerifiesTheServer) {
  Serve(certs_.Server(TlsOptions::ClientAuth::kNone));
  absl::StatusOr<PeerValue> v = Get(certs_.Client());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->value.view(), "630");
  EXPECT_EQ(Get(certs_.Client(), "Bob").status().code(), absl::StatusCode::kNotFound);
  // A client that trusts another CA refuses this server.
  TlsOptions other{.ca_file = certs_.Path("other.pem")};
  EXPECT_EQ(Get(other).status().code(), absl::StatusCode::kUnavailable);
  // A plaintext client is refused.
  EXPECT_FALSE(Get(std::nullopt).ok());
}

TEST_P(PeerTlsTest, RequiredClientCertificatesMustBeTheCas) {
  Serve(certs_.Server(TlsOptions::ClientAuth::kRequire));
  EXPECT_FALSE(Get(certs_.Client()).ok()) << "served a client without a certificate";
  TlsOptions stranger = certs_.Client();
  stranger.cert_file = certs_.Path("other-stranger.pem");
  stranger.key_file = certs_.Path("other-stranger.key");
  EXPECT_FALSE(Get(stranger).ok()) << "served a certificate of another CA";
  absl::StatusOr<PeerValue> v = Get(certs_.Client("ca-client"));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->value.view(), "630");
}

TEST_P(PeerTlsTest, ATlsClientNamesAPlaintextServer) {
  Serve(std::nullopt);
  absl::StatusOr<PeerValue> v = Get(certs_.Client());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kUnavailable);
  if (GetParam() == Transport::kLean) {
    EXPECT_THAT(v.status().message(), HasSubstr("is the peer serving TLS?"));
  }
}

TEST_P(PeerTlsTest, BadFilesAreClearErrors) {
  TlsOptions missing = certs_.Server(TlsOptions::ClientAuth::kNone);
  missing.cert_file = certs_.Path("nope.pem");
  PeerServerOptions options{.address = "127.0.0.1:0", .registry = &registry_, .tls = missing};
  absl::StatusOr<std::unique_ptr<PeerServer>> s =
      GetParam() == Transport::kGrpc ? StartGrpcPeerServer(options) : StartH2PeerServer(options);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("nope.pem"));
}

TEST(LeanTlsReloadTest, ABadNewCertificateKeepsTheOld) {
  Certs certs("reload");
  ASSERT_TRUE(certs.ok());
  GroupRegistry registry;
  ASSERT_TRUE(registry
                  .NewGroup({.name = "scores",
                             .getter = [](std::string_view) -> absl::StatusOr<Loaded> {
                               return ByteView::Copy("630");
                             }})
                  .ok());
  const std::string live = certs.Path("live.pem");
  fs::copy_file(certs.Path("ca-server.pem"), live);
  TlsOptions tls = certs.Server(TlsOptions::ClientAuth::kNone);
  tls.cert_file = live;
  absl::StatusOr<std::unique_ptr<PeerServer>> server =
      StartH2PeerServer({.address = "127.0.0.1:0", .registry = &registry, .tls = tls});
  ASSERT_TRUE(server.ok()) << server.status();
  std::ofstream(live, std::ios::trunc) << "garbage\n";
  const absl::Status reload = (*server)->ReloadTls();
  EXPECT_EQ(reload.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reload.message(), HasSubstr("live.pem"));
  absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create(1, certs.Client());
  ASSERT_TRUE(client.ok());
  absl::StatusOr<PeerValue> v =
      (*client)
          ->NewGetter(absl::StrCat("127.0.0.1:", (*server)->port()), {.mark_forwarded = false})
          ->Get("scores", "k");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->value.view(), "630");
}

// A peer's certificate changes to another CA's, and the calling node's CA
// file with it. The gRPC client keeps its channel, and its next connection
// (the peer restarted) trusts the CA it reads now, as the lean client does.
TEST_P(PeerTlsTest, AClientReadsItsChangedCaFileForItsNextConnection) {
  // A new name each run: a gRPC client's CA file watcher is shared by path
  // for the life of the process, and the last run left it on the other CA
  // (seen again only within a second), so --gtest_repeat would fail here.
  static int runs = 0;
  const std::string live_ca = certs_.Path(
      absl::StrCat("live-ca-", static_cast<int>(GetParam()), "-", ++runs, ".pem"));
  fs::remove(live_ca);
  fs::copy_file(certs_.Path("ca.pem"), live_ca);
  Serve(certs_.Server(TlsOptions::ClientAuth::kNone));
  const std::string address = address_;
  const PeerClientOptions options{.timeout = absl::Seconds(2), .mark_forwarded = false};
  TlsOptions client_tls{.ca_file = live_ca};
  std::shared_ptr<H2PeerClient> lean;
  std::shared_ptr<PeerGetter> peer;
  if (GetParam() == Transport::kGrpc) {
    peer = NewGrpcPeerGetter(address, options, client_tls);
  } else {
    absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create(1, client_tls);
    ASSERT_TRUE(client.ok()) << client.status();
    lean = *client;
    peer = lean->NewGetter(address, options);
  }
  ASSERT_TRUE(peer->Get("scores", "Tom").ok());

  // The peer comes back on the same port with a certificate of the other CA.
  server_->Shutdown(absl::ZeroDuration());
  server_.reset();
  TlsOptions other{.cert_file = certs_.Path("other-stranger.pem"),
                   .key_file = certs_.Path("other-stranger.key")};
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (server_ == nullptr && absl::Now() < give_up) {
    PeerServerOptions o{.address = address, .registry = &registry_, .tls = other};
    absl::StatusOr<std::unique_ptr<PeerServer>> s =
        GetParam() == Transport::kGrpc ? StartGrpcPeerServer(o) : StartH2PeerServer(o);
    if (s.ok()) server_ = *std::move(s);
  }
  ASSERT_NE(server_, nullptr) << "the port was not free again";
  // Until the client's CA file changes, the new certificate is refused.
  EXPECT_FALSE(peer->Get("scores", "Tom").ok());
  const std::string next = live_ca + ".next";
  fs::copy_file(certs_.Path("other.pem"), next);
  fs::rename(next, live_ca);
  // Read within a second or two (the files' times are looked at that often).
  absl::StatusOr<PeerValue> v = peer->Get("scores", "Tom");
  const absl::Time read_by = absl::Now() + absl::Seconds(10);
  while (!v.ok() && absl::Now() < read_by) v = peer->Get("scores", "Tom");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->value.view(), "630");
}

INSTANTIATE_TEST_SUITE_P(Transports, PeerTlsTest,
                         ::testing::Values(Transport::kGrpc, Transport::kLean),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           return info.param == Transport::kGrpc ? "Grpc" : "Lean";
                         });

}  // namespace
}  // namespace lcache
