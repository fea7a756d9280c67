// The admin HTTP listener (src/node/admin_http.h): the /metrics text, and a real
// server on 127.0.0.1 asked with httplib's client: status codes of
// /groups/G/K, readiness, and the bound on loads in flight.

#include "node/admin_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "gate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "test_certs.h"

namespace lcache::internal {
namespace {

using ::lcache::testing::Gate;

using ::testing::HasSubstr;
using ::testing::Not;

class AdminHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_
                    .NewGroup({.name = "scores",
                               .cache_bytes = 1 << 20,
                               .getter = [this](std::string_view key) -> absl::StatusOr<Loaded> {
                                 if (key == "slow") gate_.Wait();
                                 if (key == "Tom" || key == "slow") return ByteView::Copy("630");
                                 if (key == "broken") return absl::InternalError("db down");
                                 return KeyNotFoundError();
                               },
                               .max_key_bytes = 16})
                    .ok());
    picker_.SetPeers({"127.0.0.1:1", "10.0.0.2:9000"});
  }

  void Start(int max_inflight_loads = 8, std::string token = "",
             absl::Duration read_timeout = absl::Seconds(2)) {
    absl::StatusOr<std::unique_ptr<AdminHttpServer>> s =
        AdminHttpServer::Start({.address = "127.0.0.1:0",
                                .registry = &registry_,
                                .picker = &picker_,
                                .ready = [this] { return ready_.load(); },
                                .read_timeout = read_timeout,
                                .max_inflight_loads = max_inflight_loads,
                                .token = std::move(token)});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }

  void StartWith(AdminHttpOptions options) {
    options.address = "127.0.0.1:0";
    options.registry = &registry_;
    options.picker = &picker_;
    absl::StatusOr<std::unique_ptr<AdminHttpServer>> s = AdminHttpServer::Start(std::move(options));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }

  // The group "big": every value is 8 MiB, which fills the socket buffers
  // long before it is all sent.
  void AddBigGroup() {
    ASSERT_TRUE(registry_
                    .NewGroup({.name = "big",
                               .cache_bytes = 64 << 20,
                               .getter = [](std::string_view) -> absl::StatusOr<Loaded> {
                                 return ByteView::Copy(std::string(8 << 20, 'v'));
                               }})
                    .ok());
  }

  // A connection to the server, or -1.
  int Connect() const {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }

  // Status and body of a GET.
  std::pair<int, std::string> Get(const std::string& path) {
    httplib::Result r = client_->Get(path);
    if (!r) return {-1, httplib::to_string(r.error())};
    return {r->status, r->body};
  }

  GroupRegistry registry_;
  // Peers that are never called: the ring is all /peers needs.
  class Unused : public PeerGetter {
    absl::StatusOr<PeerValue> Get(std::string_view, std::string_view) override {
      return absl::UnimplementedError("unused");
    }
  };
  RingPicker picker_{"127.0.0.1:1", [](const std::string&) -> std::shared_ptr<PeerGetter> {
                       return std::make_shared<Unused>();
                     }};
  Gate gate_;
  std::atomic<bool> ready_{true};
  std::unique_ptr<AdminHttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(AdminHttpTest, GroupsAnswersWithTheRightStatus) {
  Start();
  EXPECT_EQ(Get("/groups/scores/Tom"), std::make_pair(200, std::string("630")));
  EXPECT_EQ(Get("/groups/scores/Tom"), std::make_pair(200, std::string("630")));  // a hit
  EXPECT_EQ(Get("/groups/scores/Bob"),
            std::make_pair(404, std::string("lru_cache: key not found\n")));
  EXPECT_EQ(Get("/groups/scores/"), std::make_pair(400, std::string("lru_cache: empty key\n")));
  auto [code, body] = Get("/groups/scores/" + std::string(17, 'k'));
  EXPECT_EQ(code, 400);
  EXPECT_THAT(body, HasSubstr("key too long (17 bytes, max 16)"));
  std::tie(code, body) = Get("/groups/nope/Tom");
  EXPECT_EQ(code, 404);
  EXPECT_THAT(body, HasSubstr("no group \"nope\""));
  EXPECT_EQ(Get("/groups/scores/broken").first, 500);
  EXPECT_EQ(Get("/no/such/path").first, 404);
  const GroupStats s = registry_.GetGroup("scores")->Stats();
  EXPECT_EQ(s.cache_hits, 1);
  EXPECT_EQ(s.local_loads, 1);
}

TEST_F(AdminHttpTest, KeysAreUrlDecoded) {
  Start();
  EXPECT_EQ(Get("/groups/scores/T%6Fm").first, 200);
  EXPECT_EQ(registry_.GetGroup("scores")->store().Get("Tom").has_value(), true);
}

TEST_F(AdminHttpTest, ReadinessFollowsTheCallbackHealthDoesNot) {
  Start();
  EXPECT_EQ(Get("/readyz").first, 200);
  EXPECT_EQ(Get("/healthz").first, 200);
  ready_ = false;
  EXPECT_EQ(Get("/readyz").first, 503);
  EXPECT_EQ(Get("/healthz").first, 200);
  EXPECT_THAT(Get("/stats").second, HasSubstr("\"ready\": false"));
}

TEST_F(AdminHttpTest, LoadsBeyondTheLimitGet503HitsStillServed) {
  Start(/*max_inflight_loads=*/1);
  ASSERT_EQ(Get("/groups/scores/Tom").first, 200);  // cached now
  std::future<std::pair<int, std::string>> slow = std::async(std::launch::async, [this] {
    httplib::Client c("127.0.0.1", server_->port());
    httplib::Result r = c.Get("/groups/scores/slow");
    return r ? std::make_pair(r->status, r->body) : std::make_pair(-1, std::string());
  });
  gate_.AwaitWaiters(1);  // the one load slot is taken
  httplib::Result r = client_->Get("/groups/scores/Bob");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  EXPECT_EQ(Get("/groups/scores/Tom").first, 200);  // a hit needs no slot
  EXPECT_EQ(Get("/metrics").first, 200);
  gate_.Open();
  EXPECT_EQ(slow.get(), std::make_pair(200, std::string("630")));
  EXPECT_EQ(Get("/groups/scores/Bob").first, 404);  // the slot is free again
}

TEST_F(AdminHttpTest, PeersListsTheRing) {
  Start();
  auto [code, body] = Get("/peers");
  EXPECT_EQ(code, 200);
  EXPECT_THAT(body, HasSubstr("\"self\": \"127.0.0.1:1\""));
  EXPECT_THAT(body, HasSubstr("\"10.0.0.2:9000\""));
}

TEST_F(AdminHttpTest, BadAddressesAreClearErrors) {
  for (const char* address : {"", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ":80"}) {
    absl::StatusOr<std::unique_ptr<AdminHttpServer>> s =
        AdminHttpServer::Start({.address = address, .registry = &registry_});
    ASSERT_FALSE(s.ok()) << address;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("expected host:port")) << address;
  }
  Start();
  absl::StatusOr<std::unique_ptr<AdminHttpServer>> taken = AdminHttpServer::Start(
      {.address = "127.0.0.1:" + std::to_string(server_->port()), .registry = &registry_});
  ASSERT_FALSE(taken.ok());
  EXPECT_THAT(std::string(taken.status().message()), HasSubstr("cannot listen"));
}

TEST_F(AdminHttpTest, StopIsIdempotentAndRefusesNewConnections) {
  Start();
  const int port = server_->port();
  server_->Stop();
  server_->Stop();
  httplib::Client c("127.0.0.1", port);
  EXPECT_FALSE(c.Get("/healthz"));
}

TEST_F(AdminHttpTest, WithATokenOnlyProbesAreOpen) {
  const std::string token = "s3cret-token-0123456789";
  Start(8, token);
  EXPECT_EQ(Get("/healthz").first, 200);
  EXPECT_EQ(Get("/readyz").first, 200);
  for (const char* path : {"/metrics", "/stats", "/peers", "/groups/scores/Tom"}) {
    const auto [status, body] = Get(path);
    EXPECT_EQ(status, 401) << path;
    EXPECT_THAT(body, Not(HasSubstr("630"))) << path;
  }
  // A Set without the token is refused before its body is read, and changes nothing.
  httplib::Result put = client_->Put("/groups/scores/Tom", "999", "application/octet-stream");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 401);
  EXPECT_EQ(put->get_header_value("WWW-Authenticate"), "Bearer");
  for (const std::string& wrong :
       {std::string("Bearer wrong"), std::string("Bearer ") + token + "x",
        std::string("Bearer ") + token.substr(0, token.size() - 1), std::string("Basic ") + token,
        token}) {
    httplib::Result r = client_->Get("/stats", {{"Authorization", wrong}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << wrong;
  }
  httplib::Result r = client_->Get("/groups/scores/Tom", {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "630");
}

// A client that asks to send its body only if it will be read ("Expect:
// 100-continue") and has no token is refused before its body.
TEST_F(AdminHttpTest, WithATokenAnExpectContinueIsRefusedBeforeTheBody) {
  Start(8, "s3cret-token-0123456789");
  const int fd = Connect();
  ASSERT_GE(fd, 0);
  const std::string head =
      "PUT /groups/scores/Tom HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
      "Expect: 100-continue\r\n\r\n";
  ASSERT_EQ(send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  std::string answer;
  char buf[512];
  for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) answer.append(buf, n);
  close(fd);
  EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 401"));
  EXPECT_EQ(Get("/groups/scores/Tom").first, 401);
}

TEST_F(AdminHttpTest, SlowClientsDoNotStarveTheProbes) {
  // The slow clients may hold a connection for 60 s: a probe that had to
  // wait for them would time out (10 s, room for a loaded sanitizer build).
  Start(8, "", absl::Seconds(60));
  // 24 clients that each send a request line and then nothing: with a fixed
  // pool of httplib threads they held every thread.
  std::vector<int> slow;
  for (int i = 0; i < 24; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server_->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_GT(send(fd, "GET /stats HTTP/1.1\r\n", 21, 0), 0);
    slow.push_back(fd);
  }
  httplib::Client probe("127.0.0.1", server_->port());
  probe.set_connection_timeout(10);
  probe.set_read_timeout(10);
  for (int i = 0; i < 5; ++i) {
    httplib::Result r = probe.Get("/healthz");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);
  }
  for (int fd : slow) close(fd);
}

// A slowloris that sends a byte of its headers every 50 ms never waits
// long enough for the read timeout, but its whole request has a deadline:
// the server ends the connection then, and the one thread it held serves a
// probe that was waiting for it.
TEST_F(AdminHttpTest, ARequestTrickledInIsCutOffAtItsDeadline) {
  StartWith({.max_connections = 1,
             .read_timeout = absl::Seconds(5),
             .request_timeout = absl::Seconds(1)});
  const int fd = Connect();
  ASSERT_GE(fd, 0);
  const absl::Time start = absl::Now();
  ASSERT_GT(send(fd, "GET /stats HTTP/1.1\r\nX-Slow: ", 29, MSG_NOSIGNAL), 0);
  std::future<absl::Duration> cut_off = std::async(std::launch::async, [&] {
    // Trickles for up to 20 s, unless the server ends the connection.
    while (absl::Now() - start < absl::Seconds(20)) {
      if (send(fd, "x", 1, MSG_NOSIGNAL) < 0) break;
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) {
        char buf[512];
        if (recv(fd, buf, sizeof buf, 0) <= 0) break;  // closed (after a 400, if any)
      }
    }
    return absl::Now() - start;
  });
  // The probe waits for the only thread, held by the trickler until then.
  httplib::Client probe("127.0.0.1", server_->port());
  probe.set_read_timeout(15);
  httplib::Result r = probe.Get("/healthz");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
  const absl::Duration held = cut_off.get();
  close(fd);
  EXPECT_GE(held, absl::Milliseconds(900));
  EXPECT_LT(held, absl::Seconds(10)) << "the trickler kept its connection";
}

// A response the client does not read is bounded the same way.
TEST_F(AdminHttpTest, AResponseNobodyReadsIsCutOffAtItsDeadline) {
  AddBigGroup();
  StartWith({.max_connections = 1,
             .read_timeout = absl::Seconds(30),
             .request_timeout = absl::Seconds(1)});
  const int fd = Connect();
  ASSERT_GE(fd, 0);
  const std::string request = "GET /groups/big/k HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  // Never read: the thread is freed by the response deadline, not the
  // 30 s write timeout.
  httplib::Client probe("127.0.0.1", server_->port());
  probe.set_read_timeout(15);
  const absl::Time start = absl::Now();
  httplib::Result r = probe.Get("/healthz");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  close(fd);
}

class AdminHttpsTest : public AdminHttpTest {
 protected:
  // Made once (openssl takes a while), removed at exit.
  static testing::Certs& certs() {
    static testing::Certs certs("admin");
    return certs;
  }

  // Status and body of a GET over HTTPS, showing `who`'s certificate if set.
  std::pair<int, std::string> GetTls(const std::string& path, const std::string& who = "",
                                     const httplib::Headers& headers = {}) {
    std::unique_ptr<httplib::SSLClient> c =
        who.empty() ? std::make_unique<httplib::SSLClient>("127.0.0.1", server_->port())
                    : std::make_unique<httplib::SSLClient>("127.0.0.1", server_->port(),
                                                           certs().Path(who + ".pem"),
                                                           certs().Path(who + ".key"));
    c->set_ca_cert_path(certs().Path("ca.pem"));
    c->enable_server_certificate_verification(true);
    httplib::Result r = c->Get(path, headers);
    if (!r) return {-1, httplib::to_string(r.error())};
    return {r->status, r->body};
  }
};

TEST_F(AdminHttpsTest, ClientCertificatesOpenWhatProbesDoNotNeed) {
  ASSERT_TRUE(certs().ok()) << "openssl could not make the test certificates";
  StartWith({.tls = certs().Server(TlsOptions::ClientAuth::kRequest)});
  EXPECT_EQ(GetTls("/healthz").first, 200);
  EXPECT_EQ(GetTls("/readyz").first, 200);
  for (const char* path : {"/metrics", "/stats", "/peers", "/groups/scores/Tom"}) {
    const auto [status, body] = GetTls(path);
    EXPECT_EQ(status, 401) << path;
    EXPECT_THAT(body, HasSubstr("client certificate")) << path;
    EXPECT_EQ(GetTls(path, "other-stranger").first, 401) << path << ": another CA's certificate";
  }
  EXPECT_EQ(GetTls("/groups/scores/Tom", "ca-client").second, "630");
  EXPECT_EQ(GetTls("/stats", "ca-client").first, 200);
  // Plain HTTP on the HTTPS port gets nothing.
  EXPECT_EQ(Get("/healthz").first, -1);
}

TEST_F(AdminHttpsTest, ATokenOrACertificateWillDo) {
  ASSERT_TRUE(certs().ok());
  const std::string token = "s3cret-token-0123456789";
  StartWith({.token = token, .tls = certs().Server(TlsOptions::ClientAuth::kRequest)});
  EXPECT_EQ(GetTls("/stats").first, 401);
  EXPECT_EQ(GetTls("/stats", "", {{"Authorization", "Bearer " + token}}).first, 200);
  EXPECT_EQ(GetTls("/stats", "ca-client").first, 200);
}

TEST_F(AdminHttpsTest, HttpsWithoutClientAuthIsOpenAsHttpIs) {
  ASSERT_TRUE(certs().ok());
  StartWith({.tls = certs().Server(TlsOptions::ClientAuth::kNone)});
  EXPECT_EQ(GetTls("/groups/scores/Tom").second, "630");
}

TEST_F(AdminHttpsTest, ATlsHandshakeThatNeverEndsIsCutOff) {
  ASSERT_TRUE(certs().ok());
  StartWith({.max_connections = 1,
             .read_timeout = absl::Seconds(30),
             .request_timeout = absl::Seconds(1),
             .tls = certs().Server(TlsOptions::ClientAuth::kNone)});
  const int fd = Connect();  // sends nothing: no ClientHello
  ASSERT_GE(fd, 0);
  const absl::Time start = absl::Now();
  EXPECT_EQ(GetTls("/healthz").first, 200);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  close(fd);
}

// OpenSSL writes with write(2): a client that hangs up in the middle of a
// TLS response must not raise SIGPIPE in a process that does not ignore it
// (this test's). The server stays up.
TEST_F(AdminHttpsTest, AClientThatHangsUpMidResponseDoesNotKillTheProcess) {
  ASSERT_TRUE(certs().ok());
  AddBigGroup();
  StartWith({.tls = certs().Server(TlsOptions::ClientAuth::kNone)});
  // httplib's Server (our listener is one) ignores SIGPIPE for the whole
  // process when it is made; undo that, as a program that changes its
  // signal handling after starting the listener would.
  void (*const before)(int) = std::signal(SIGPIPE, SIG_DFL);
  absl::Cleanup restore = [before] { std::signal(SIGPIPE, before); };
  for (int i = 0; i < 3; ++i) {
    httplib::SSLClient c("127.0.0.1", server_->port());
    c.set_ca_cert_path(certs().Path("ca.pem"));
    c.enable_server_certificate_verification(true);
    // Stops reading after the first piece: the client closes its end.
    httplib::Result r = c.Get("/groups/big/k", [](const char*, size_t) { return false; });
    EXPECT_FALSE(r);
  }
  EXPECT_EQ(GetTls("/healthz").first, 200);
}

TEST(AdminHttpOptionsTest, BadTlsFilesAreClearErrors) {
  GroupRegistry registry;
  absl::StatusOr<std::unique_ptr<AdminHttpServer>> s = AdminHttpServer::Start(
      {.address = "127.0.0.1:0",
       .registry = &registry,
       .tls = TlsOptions{.cert_file = "/nonexistent.pem", .key_file = "/nonexistent.key"}});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("/nonexistent.pem"));
}

TEST(RenderMetricsTest, FamiliesHistogramsAndEscapedLabels) {
  ManualClock clock;
  GroupRegistry registry;
  Group* g = *registry.NewGroup({.name = "we\"ird\\name\n",
                                 .getter = [&](std::string_view) -> absl::StatusOr<Loaded> {
                                   clock.Advance(absl::Milliseconds(3));
                                   return ByteView::Copy("v");
                                 },
                                 .clock = &clock});
  ASSERT_TRUE(g->Get("a").ok());
  ASSERT_TRUE(g->Get("a").ok());
  const std::string text = RenderMetrics(registry, nullptr);
  const std::string label = R"({group="we\"ird\\name\n"})";
  EXPECT_THAT(text,
              HasSubstr("# TYPE lcache_gets_total counter\nlcache_gets_total" + label + " 2\n"));
  EXPECT_THAT(text, HasSubstr("lcache_hits_total" + label + " 1\n"));
  EXPECT_THAT(text, HasSubstr("lcache_local_loads_total" + label + " 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE lcache_items gauge\nlcache_items" + label + " 1\n"));
  EXPECT_THAT(text, HasSubstr("lcache_peers 0\n"));
  const std::string h = "lcache_getter_duration_seconds";
  EXPECT_THAT(text, HasSubstr("# TYPE " + h + " histogram\n"));
  EXPECT_THAT(text, HasSubstr(h + R"(_bucket{group="we\"ird\\name\n",le="0.0025"} 0)"));
  EXPECT_THAT(text, HasSubstr(h + R"(_bucket{group="we\"ird\\name\n",le="0.005"} 1)"));
  EXPECT_THAT(text, HasSubstr(h + R"(_bucket{group="we\"ird\\name\n",le="+Inf"} 1)"));
  EXPECT_THAT(text, HasSubstr(h + "_sum" + label + " 0.003\n"));
  EXPECT_THAT(text, HasSubstr(h + "_count" + label + " 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("\n\n")));
}

}  // namespace
}  // namespace lcache::internal

namespace lcache::internal {
namespace {

class DownPeer final : public PeerGetter {
 public:
  absl::StatusOr<PeerValue> Get(std::string_view, std::string_view) override {
    return absl::UnavailableError("connection refused");
  }
};

TEST(RenderMetricsTest, OutlierEjectionCounters) {
  GroupRegistry registry;
  ManualClock clock;
  RingPicker picker(
      "self:1", [](const std::string&) { return std::make_shared<DownPeer>(); },
      RingPickerOptions{.ejection = {.after_failures = 1, .clock = &clock}});
  picker.SetPeers({"self:1", "down:1"});
  std::string key;
  std::shared_ptr<PeerGetter> peer;
  for (int i = 0; peer == nullptr; ++i) {
    key = absl::StrCat("k", i);
    peer = picker.PickPeer(key);
  }
  EXPECT_FALSE(peer->Get("g", key).ok());    // one failure ejects it
  EXPECT_EQ(picker.PickPeer(key), nullptr);  // its keys load locally now: a skip

  const std::string text = RenderMetrics(registry, &picker);
  EXPECT_THAT(text, HasSubstr("# TYPE lcache_peer_ejections_total counter\n"
                              "lcache_peer_ejections_total 1\n"));
  EXPECT_THAT(text, HasSubstr("lcache_peer_ejection_skips_total 1\n"));
  EXPECT_THAT(text, HasSubstr("lcache_peer_returns_total 0\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE lcache_peers_ejected gauge\nlcache_peers_ejected 1\n"));
}

}  // namespace
}  // namespace lcache::internal
