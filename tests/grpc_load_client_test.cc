// lcache-bench's HTTP/2 client (tools/grpc_load_client.h) against both real
// peer servers over loopback: the lean one (nghttp2) and gRPC C++, whose
// HTTP/2 stack is strict about frames, HPACK and flow control. Values and
// statuses, many calls on one connection (the repeated header block, the
// server's window), answers over many frames, the server's stream limit,
// deadlines, a target that is down and then up, a server that shuts down.

#include "grpc_load_client.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/grpc_peer.h"
#include "lcache/h2_peer.h"
#include "lcache/json_codec.h"

namespace lcache::tools {
namespace {

using ::lcache::testing::Gate;
using ::testing::HasSubstr;
using Clock = GrpcLoadClient::Clock;

enum class Transport { kGrpc, kLean };

std::string TransportName(const ::testing::TestParamInfo<Transport>& info) {
  return info.param == Transport::kGrpc ? "Grpc" : "Lean";
}

int FreePort() {
  // A server on port 0 tells us one, and gives it back when it stops.
  GroupRegistry registry;
  absl::StatusOr<std::unique_ptr<PeerServer>> s =
      StartH2PeerServer({.address = "127.0.0.1:0", .registry = &registry});
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? (*s)->port() : 0;
}

struct Outcome {
  absl::Status status;
  std::string message;
  absl::Duration latency;
};

class GrpcLoadClientTest : public ::testing::TestWithParam<Transport> {
 protected:
  static constexpr size_t kLargeValueBytes = 1 << 20;

  void SetUp() override {
    Getter getter = [this](std::string_view key) -> absl::StatusOr<Loaded> {
      if (key.starts_with("slow")) {
        gate_.Wait();
        return ByteView::Copy("value-of-" + std::string(key));
      }
      if (key == "large") return ByteView::Copy(LargeValue());
      if (key.starts_with("big-key")) return ByteView::Copy("for-a-big-key");
      if (key == "Tom") return ByteView::Copy("630");
      return KeyNotFoundError();
    };
    ASSERT_TRUE(registry_.NewGroup({.name = "scores", .getter = getter}).ok());
  }

  void TearDown() override {
    gate_.Open();  // so that Shutdown does not wait on a blocked getter
    if (server_) server_->Shutdown(absl::ZeroDuration());
  }

  static std::string LargeValue() {
    std::string v(kLargeValueBytes, '\0');
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<char>(i * 131 % 251);
    return v;
  }

  void StartServer(int port = 0, int max_queued_loads = 1024) {
    PeerServerOptions options{.address = absl::StrCat("127.0.0.1:", port),
                              .registry = &registry_,
                              .max_queued_loads = max_queued_loads};
    absl::StatusOr<std::unique_ptr<PeerServer>> server =
        GetParam() == Transport::kGrpc ? StartGrpcPeerServer(std::move(options))
                                       : StartH2PeerServer(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // A client of `address` whose calls end in outcomes_, in order.
  std::unique_ptr<GrpcLoadClient> Client(const std::string& address,
                                         absl::Duration timeout = absl::Seconds(10)) {
    absl::StatusOr<std::unique_ptr<GrpcLoadClient>> client =
        GrpcLoadClient::Create({address}, {.timeout = timeout},
                               [this](GrpcLoadClient::Call*, const absl::Status& status,
                                      std::string_view message, absl::Duration latency) {
                                 outcomes_.push_back({status, std::string(message), latency});
                               });
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }
  std::string Address() const { return absl::StrCat("127.0.0.1:", server_->port()); }

  // Polls until no call is in flight; false if that takes over 20 s.
  static bool PollUntilDone(GrpcLoadClient& client) {
    const Clock::time_point give_up = Clock::now() + std::chrono::seconds(20);
    while (client.in_flight() > 0 && Clock::now() < give_up) {
      client.Poll(Clock::now() + std::chrono::milliseconds(10));
    }
    return client.in_flight() == 0;
  }

  static std::string Get(std::string_view key) { return wire::EncodeGetRequest("scores", key); }
  // The value of an answer, or its `err` as an error.
  static absl::StatusOr<std::string> ValueOf(const Outcome& o) {
    if (!o.status.ok()) return o.status;
    absl::StatusOr<wire::GetResponse> answer = wire::DecodeGetResponse(o.message);
    if (!answer.ok()) return answer.status();
    if (!answer->err.empty()) return absl::NotFoundError(answer->err);
    return answer->value;
  }

  // Every call ended with `value` (compared without printing it: it may be
  // a megabyte).
  void ExpectEveryValueIs(const std::string& value) const {
    for (const Outcome& o : outcomes_) {
      absl::StatusOr<std::string> v = ValueOf(o);
      ASSERT_TRUE(v.ok()) << v.status();
      EXPECT_TRUE(*v == value) << "got " << v->size() << " bytes, not the " << value.size()
                               << " expected";
    }
  }

  GroupRegistry registry_;
  Gate gate_;
  std::unique_ptr<PeerServer> server_;
  std::vector<Outcome> outcomes_;
};

TEST_P(GrpcLoadClientTest, AnswersCarryValuesErrorsAndStatuses) {
  StartServer();
  std::unique_ptr<GrpcLoadClient> client = Client(Address());
  GrpcLoadClient::Call calls[3];
  client->Start(&calls[0], 0, Get("Tom"));
  client->Start(&calls[1], 0, Get("nobody"));
  client->Start(&calls[2], 0, "{not json");
  ASSERT_TRUE(PollUntilDone(*client));
  ASSERT_EQ(outcomes_.size(), 3u);
  // The answers come in any order; each is one of the three.
  int values = 0, not_found = 0, invalid = 0;
  for (const Outcome& o : outcomes_) {
    absl::StatusOr<std::string> v = ValueOf(o);
    if (v.ok()) {
      EXPECT_EQ(*v, "630");
      ++values;
    } else if (o.status.ok()) {
      EXPECT_THAT(v.status().message(), HasSubstr("key not found"));
      ++not_found;
    } else {
      EXPECT_EQ(o.status.code(), absl::StatusCode::kInvalidArgument) << o.status;
      ++invalid;
    }
  }
  EXPECT_EQ(values, 1);
  EXPECT_EQ(not_found, 1);
  EXPECT_EQ(invalid, 1);
}

TEST_P(GrpcLoadClientTest, ThousandsOfCallsOnOneConnection) {
  // More request bytes than the server's initial connection window (64 KiB),
  // so the client must follow its WINDOW_UPDATEs; every call after the first
  // sends the repeated header block, which only decodes if the first one
  // built the server's HPACK table as the client assumed.
  StartServer();
  constexpr int kChains = 64;
  constexpr int kCallsPerChain = 60;
  std::vector<GrpcLoadClient::Call> chains(kChains);
  std::vector<int> left(kChains, kCallsPerChain);
  int ok = 0;
  std::vector<absl::Status> errors;
  absl::StatusOr<std::unique_ptr<GrpcLoadClient>> c = GrpcLoadClient::Create(
      {Address()}, {},
      [&](GrpcLoadClient::Call* call, const absl::Status& status, std::string_view message,
          absl::Duration) {
        absl::StatusOr<std::string> v = ValueOf({status, std::string(message), {}});
        if (v.ok() && *v == "630") {
          ++ok;
        } else {
          errors.push_back(v.status());
        }
        const size_t i = static_cast<size_t>(call - chains.data());
        if (--left[i] > 0) (*c)->Start(call, 0, Get("Tom"));
      });
  ASSERT_TRUE(c.ok()) << c.status();
  for (GrpcLoadClient::Call& call : chains) (*c)->Start(&call, 0, Get("Tom"));
  ASSERT_TRUE(PollUntilDone(**c));
  EXPECT_EQ(ok, kChains * kCallsPerChain);
  EXPECT_TRUE(errors.empty()) << errors.front();
}

TEST_P(GrpcLoadClientTest, ManyLargeRequestsAtOnce) {
  // 400 requests of 3 KB at once (1.2 MB) arrive whole. Both servers open
  // large windows at once, so this does not reach the client's flow control;
  // h2_wire_test holds it to python-h2's default 64 KiB window.
  StartServer();
  std::unique_ptr<GrpcLoadClient> client = Client(Address());
  std::vector<GrpcLoadClient::Call> calls(400);
  for (size_t i = 0; i < calls.size(); ++i) {
    client->Start(&calls[i], 0, Get(absl::StrCat("big-key-", i, "-", std::string(3000, 'x'))));
  }
  ASSERT_TRUE(PollUntilDone(*client));
  ASSERT_EQ(outcomes_.size(), calls.size());
  ExpectEveryValueIs("for-a-big-key");
}

TEST_P(GrpcLoadClientTest, LargeAnswersArriveWhole) {
  StartServer();
  std::unique_ptr<GrpcLoadClient> client = Client(Address());
  GrpcLoadClient::Call calls[6];
  for (GrpcLoadClient::Call& call : calls) client->Start(&call, 0, Get("large"));
  ASSERT_TRUE(PollUntilDone(*client));
  ASSERT_EQ(outcomes_.size(), 6u);
  ExpectEveryValueIs(LargeValue());
}

TEST_P(GrpcLoadClientTest, KeepsWithinTheServersStreamLimit) {
  // The lean server takes 1024 streams at once: calls beyond wait in the
  // client, instead of being refused. gRPC C++ sets no limit. (Each waiting
  // call holds a place in the server's load queue, hence its larger bound.)
  StartServer(0, 2048);
  std::unique_ptr<GrpcLoadClient> client = Client(Address());
  constexpr size_t kCalls = 1100;
  std::vector<GrpcLoadClient::Call> calls(kCalls);
  for (GrpcLoadClient::Call& call : calls) client->Start(&call, 0, Get("slow-1"));
  // The getter holds every answer: any call that ends now was refused.
  client->Poll(Clock::now() + std::chrono::milliseconds(300));
  EXPECT_EQ(client->in_flight(), kCalls);
  for (const Outcome& o : outcomes_) ADD_FAILURE() << "ended early: " << o.status;
  gate_.Open();
  ASSERT_TRUE(PollUntilDone(*client));
  ASSERT_EQ(outcomes_.size(), kCalls);
  ExpectEveryValueIs("value-of-slow-1");
}

TEST_P(GrpcLoadClientTest, DeadlineEndsTheCallNotTheConnection) {
  StartServer();
  constexpr absl::Duration kTimeout = absl::Milliseconds(200);
  std::unique_ptr<GrpcLoadClient> client = Client(Address(), kTimeout);
  GrpcLoadClient::Call slow, fast;
  client->Start(&slow, 0, Get("slow-2"));
  ASSERT_TRUE(PollUntilDone(*client));
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].status.code(), absl::StatusCode::kDeadlineExceeded) << outcomes_[0].status;
  if (outcomes_[0].status.message() == "lcache-bench: deadline exceeded") {
    EXPECT_GE(outcomes_[0].latency, kTimeout);  // the client's timer: never early
  } else {
    // The server ended it at its grpc-timeout: gRPC C++ counts from a cached
    // clock, so it may answer a little before the client's deadline.
    EXPECT_GE(outcomes_[0].latency, kTimeout - absl::Milliseconds(20));
  }
  // The stream was reset; the connection still carries calls.
  client->Start(&fast, 0, Get("Tom"));
  ASSERT_TRUE(PollUntilDone(*client));
  ASSERT_EQ(outcomes_.size(), 2u);
  EXPECT_EQ(ValueOf(outcomes_[1]).value_or("error"), "630");
}

TEST_P(GrpcLoadClientTest, TargetDownIsUnavailableThenUsedOnceUp) {
  const int port = FreePort();
  std::unique_ptr<GrpcLoadClient> client = Client(absl::StrCat("127.0.0.1:", port));
  GrpcLoadClient::Call call;
  client->Start(&call, 0, Get("Tom"));
  ASSERT_TRUE(PollUntilDone(*client));
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_EQ(outcomes_[0].status.code(), absl::StatusCode::kUnavailable) << outcomes_[0].status;
  StartServer(port);
  // The next attempt waits for the backoff (at most 1 s), then connects.
  client->Start(&call, 0, Get("Tom"));
  ASSERT_TRUE(PollUntilDone(*client));
  ASSERT_EQ(outcomes_.size(), 2u);
  EXPECT_EQ(ValueOf(outcomes_[1]).value_or(outcomes_[1].status.ToString()), "630");
}

TEST_P(GrpcLoadClientTest, ServerShutdownFailsTheCallsInFlightAndANewServerIsUsed) {
  StartServer();
  const int port = server_->port();
  std::unique_ptr<GrpcLoadClient> client = Client(Address());
  GrpcLoadClient::Call slow, later;
  client->Start(&slow, 0, Get("slow-3"));
  client->Poll(Clock::now() + std::chrono::milliseconds(1));
  gate_.AwaitWaiters(1);  // the call is at the server
  std::thread stop([&] { server_->Shutdown(absl::ZeroDuration()); });
  ASSERT_TRUE(PollUntilDone(*client));
  gate_.Open();
  stop.join();
  ASSERT_EQ(outcomes_.size(), 1u);
  EXPECT_FALSE(outcomes_[0].status.ok());
  EXPECT_NE(outcomes_[0].status.code(), absl::StatusCode::kDeadlineExceeded)
      << "a server that went away cost a deadline";
  server_.reset();
  StartServer(port);
  client->Start(&later, 0, Get("Tom"));
  ASSERT_TRUE(PollUntilDone(*client));
  ASSERT_EQ(outcomes_.size(), 2u);
  EXPECT_EQ(ValueOf(outcomes_[1]).value_or(outcomes_[1].status.ToString()), "630");
}

TEST(GrpcLoadClientOptionsTest, BadTargetsAreRejected) {
  const auto create = [](std::vector<std::string> targets) {
    return GrpcLoadClient::Create(targets, {}, [](auto*, const auto&, auto, auto) {}).status();
  };
  EXPECT_EQ(create({}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(create({"127.0.0.1"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(create({"127.0.0.1:"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(create({"no-such-host.invalid:80"}).message(), HasSubstr("cannot resolve"));
  EXPECT_TRUE(create({"127.0.0.1:1", "localhost:2"}).ok());
}

INSTANTIATE_TEST_SUITE_P(Transports, GrpcLoadClientTest,
                         ::testing::Values(Transport::kGrpc, Transport::kLean), TransportName);

}  // namespace
}  // namespace lcache::tools
