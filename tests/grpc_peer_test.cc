// The peer transports over real loopback connections, each suite run twice:
// on gRPC C++ (grpc_peer.h) and on the lean transport (h2_peer.h). The
// client and server against each other, the exact bytes on the wire (through
// a raw gRPC C++ generic stub, whatever the server), forwarding marks, the
// load executor's bounds, deadlines and shutdown.

#include "lcache/grpc_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "delay_proxy.h"
#include "gate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lcache/h2_peer.h"
#include "lcache/json_codec.h"
#include "lcache/outlier_ejection.h"
#include "loopback.h"
#include "peer/h2/h2_client.h"

namespace lcache {
namespace {

using ::lcache::testing::Gate;
using ::lcache::testing::RawResult;

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// A PeerPicker that names one fake peer the owner of every key.
class FakePeer final : public PeerGetter {
 public:
  absl::StatusOr<PeerValue> Get(std::string_view, std::string_view) override {
    ++calls;
    return ByteView::Copy("from-peer");
  }
  std::atomic<int> calls{0};
};

class AlwaysPeer final : public PeerPicker {
 public:
  std::shared_ptr<PeerGetter> PickPeer(std::string_view) override { return peer; }
  std::shared_ptr<FakePeer> peer = std::make_shared<FakePeer>();
};

enum class Transport { kGrpc, kLean };

std::string TransportName(const ::testing::TestParamInfo<Transport>& info) {
  return info.param == Transport::kGrpc ? "Grpc" : "Lean";
}

absl::StatusOr<std::unique_ptr<PeerServer>> StartServerOn(Transport t, PeerServerOptions options) {
  return t == Transport::kGrpc ? StartGrpcPeerServer(std::move(options))
                               : StartH2PeerServer(std::move(options));
}

std::shared_ptr<PeerGetter> NewClientOn(Transport t, const std::string& address,
                                        PeerClientOptions options) {
  if (t == Transport::kGrpc) return NewGrpcPeerGetter(address, options);
  absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create();
  EXPECT_TRUE(client.ok()) << client.status();
  return (*client)->NewGetter(address, options);
}

class GrpcPeerTest : public ::testing::TestWithParam<Transport> {
 protected:
  // The seed's demo data; "slow*" keys wait on the gate, "broken" fails.
  void SetUp() override {
    Getter getter = [this](std::string_view key) -> absl::StatusOr<Loaded> {
      ++loads_;
      if (key.starts_with("slow")) {
        gate_.Wait();
        return ByteView::Copy("value-of-" + std::string(key));
      }
      if (key == "broken") return absl::InternalError("disk on fire");
      if (key == "Tom") return ByteView::Copy("630");
      if (key == "Jack") return ByteView::Copy("589");
      if (key == "Sam") return ByteView::Copy("567");
      return KeyNotFoundError();
    };
    ASSERT_TRUE(registry_.NewGroup({.name = "scores", .getter = getter}).ok());
    ASSERT_TRUE(registry_.NewGroup({.name = "routed", .getter = getter, .peers = &picker_}).ok());
    ASSERT_TRUE(
        registry_.NewGroup({.name = "timed", .getter = getter, .default_ttl = absl::Seconds(60)})
            .ok());
  }

  void TearDown() override {
    gate_.Open();  // so that Shutdown does not wait on a blocked getter
    if (server_) server_->Shutdown(absl::ZeroDuration());
  }

  void StartServer(PeerServerOptions options = {}) {
    options.address = "127.0.0.1:0";
    options.registry = &registry_;
    absl::StatusOr<std::unique_ptr<PeerServer>> server =
        StartServerOn(GetParam(), std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
  }

  std::string Address() const { return absl::StrCat("127.0.0.1:", server_->port()); }

  std::shared_ptr<PeerGetter> Client(bool mark_forwarded = false,
                                     absl::Duration timeout = absl::Seconds(10)) {
    return NewClientOn(GetParam(), Address(),
                       {.timeout = timeout, .mark_forwarded = mark_forwarded});
  }

  // One call with hand-written bytes, bypassing the codec.
  RawResult RawCall(const std::string& method, const std::string& body) {
    if (channel_ == nullptr) {
      channel_ = grpc::CreateChannel(Address(), grpc::InsecureChannelCredentials());
    }
    return testing::RawGrpcCall(channel_, method, body);
  }

  // With load_threads = 1: a call for "slow-1" holds the only load thread
  // until the gate opens. Join the thread after.
  std::thread HoldTheLoadThread() {
    std::thread holder([this] { EXPECT_TRUE(Client()->Get("scores", "slow-1").ok()); });
    gate_.AwaitWaiters(1);
    return holder;
  }

  // Runs `late`, a call for a miss that queues behind the held load thread
  // and fails DEADLINE_EXCEEDED after `deadline`; returns once that deadline
  // has also passed on the server, which takes it from grpc-timeout when the
  // request arrives (request number `nth` of the group).
  void QueueACallThatExpires(absl::Duration deadline, int nth, std::function<void()> late) {
    Group* scores = registry_.GetGroup("scores");
    std::thread caller(std::move(late));
    while (scores->Stats().server_requests < nth) std::this_thread::yield();
    const absl::Time counted = absl::Now();
    caller.join();
    std::this_thread::sleep_until(absl::ToChronoTime(counted + deadline + absl::Milliseconds(1)));
  }

  // Frees the held load thread, then expects the one load queued behind it
  // dropped (counted in loads_cancelled), and `loads` getter calls in all.
  void ExpectTheQueuedLoadDropped(std::thread& holder, int loads) {
    Group* scores = registry_.GetGroup("scores");
    gate_.Open();
    holder.join();
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (scores->Stats().loads_cancelled < 1 && absl::Now() < give_up) {
      std::this_thread::yield();
    }
    EXPECT_EQ(scores->Stats().loads_cancelled, 1);
    EXPECT_EQ(loads_.load(), loads);
  }

  GroupRegistry registry_;
  AlwaysPeer picker_;
  Gate gate_;
  std::atomic<int> loads_{0};
  std::unique_ptr<PeerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_P(GrpcPeerTest, ClientGetsValuesAndInBandErrors) {
  StartServer();
  std::shared_ptr<PeerGetter> client = Client();

  absl::StatusOr<PeerValue> tom = client->Get("scores", "Tom");
  ASSERT_TRUE(tom.ok()) << tom.status();
  EXPECT_EQ(tom->value, "630");

  absl::StatusOr<PeerValue> missing = client->Get("scores", "Nobody");
  EXPECT_EQ(missing.status(), absl::NotFoundError(kKeyNotFoundMessage));

  absl::StatusOr<PeerValue> no_group = client->Get("no-such-group", "Tom");
  EXPECT_EQ(no_group.status(), absl::NotFoundError(kKeyNotFoundMessage));

  absl::StatusOr<PeerValue> empty = client->Get("scores", "");
  EXPECT_EQ(empty.status(), absl::InvalidArgumentError(kEmptyKeyMessage));

  absl::StatusOr<PeerValue> broken = client->Get("scores", "broken");
  EXPECT_EQ(broken.status(), absl::UnknownError("disk on fire"));

  // Requests from a client count as server requests of the group.
  EXPECT_GE(registry_.GetGroup("scores")->Stats().server_requests, 4);
}

TEST_P(GrpcPeerTest, ExactBytesOnTheWire) {
  StartServer();
  RawResult tom = RawCall(kGetMethod, R"({"group":"scores","key":"Tom"})");
  ASSERT_TRUE(tom.status.ok()) << tom.status.error_message();
  EXPECT_EQ(tom.body, R"({"value":"NjMw"})");

  // A hit (Tom is cached now) gives the same bytes; field order and unknown
  // fields do not matter.
  RawResult hit = RawCall(kGetMethod, R"({"key":"Tom","extra":[1,{"a":null}],"group":"scores"})");
  ASSERT_TRUE(hit.status.ok());
  EXPECT_EQ(hit.body, R"({"value":"NjMw"})");

  RawResult missing = RawCall(kGetMethod, R"({"group":"scores","key":"Nobody"})");
  ASSERT_TRUE(missing.status.ok());
  EXPECT_EQ(missing.body, R"({"err":"lru_cache: key not found"})");

  RawResult no_group = RawCall(kGetMethod, R"({"group":"nope","key":"Tom"})");
  ASSERT_TRUE(no_group.status.ok());
  EXPECT_EQ(no_group.body, R"({"err":"lru_cache: key not found"})");

  RawResult empty = RawCall(kGetMethod, R"({"group":"scores","key":""})");
  ASSERT_TRUE(empty.status.ok());
  EXPECT_EQ(empty.body, R"({"err":"lru_cache: empty key"})");

  RawResult broken = RawCall(kGetMethod, R"({"group":"scores","key":"broken"})");
  ASSERT_TRUE(broken.status.ok());
  EXPECT_EQ(broken.body, R"({"err":"disk on fire"})");
}

// The owner's remaining time to live rides beside the value (ttl_ms), on a
// load and on a hit, so the asker's hot copy can end no later than ours;
// values that never expire keep Go's exact bytes.
TEST_P(GrpcPeerTest, TheOwnersRemainingTtlTravelsWithTheValue) {
  StartServer();
  std::shared_ptr<PeerGetter> client = Client();
  for (const char* when : {"load", "hit"}) {
    const absl::Time asked_at = absl::Now();
    absl::StatusOr<PeerValue> v = client->Get("timed", "Tom");
    ASSERT_TRUE(v.ok()) << when << ": " << v.status();
    EXPECT_EQ(v->value, "630");
    EXPECT_LE(v->ttl, absl::Seconds(60)) << when;
    EXPECT_GT(v->ttl, absl::Seconds(50)) << when;  // loaded at most the test's time ago
    EXPECT_LE(asked_at + v->ttl, registry_.GetGroup("timed")->GetIfCached("Tom")->expire_at)
        << when << ": the asker's copy would outlive the owner's";
  }
  RawResult raw = RawCall(kGetMethod, R"({"group":"timed","key":"Tom"})");
  ASSERT_TRUE(raw.status.ok()) << raw.status.error_message();
  EXPECT_THAT(raw.body, MatchesRegex(R"(\{"value":"NjMw","ttl_ms":[0-9]+\})"));

  absl::StatusOr<PeerValue> forever = client->Get("scores", "Tom");
  ASSERT_TRUE(forever.ok()) << forever.status();
  EXPECT_EQ(forever->ttl, absl::InfiniteDuration());
  EXPECT_EQ(RawCall(kGetMethod, R"({"group":"scores","key":"Tom"})").body, R"({"value":"NjMw"})");
}

TEST_P(GrpcPeerTest, BadInputIsRejectedAndChangesNothing) {
  StartServer({.max_key_bytes = 16, .max_request_bytes = 1024});

  RawResult invalid = RawCall(kGetMethod, R"({"group":"scores","key":)");
  EXPECT_EQ(invalid.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(invalid.status.error_message().empty());

  RawResult protobuf = RawCall(kGetMethod, std::string("\x0a\x06scores\x12\x03Tom", 13));
  EXPECT_EQ(protobuf.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  RawResult wrong_type = RawCall(kGetMethod, R"({"group":"scores","key":42})");
  EXPECT_EQ(wrong_type.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(wrong_type.status.error_message(), HasSubstr("key"));

  RawResult long_key = RawCall(kGetMethod, R"({"group":"scores","key":"0123456789abcdefX"})");
  EXPECT_EQ(long_key.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(long_key.status.error_message(), HasSubstr("key too long (17 bytes, max 16)"));

  RawResult big = RawCall(kGetMethod, absl::StrCat(R"({"group":"scores","key":"Tom","pad":")",
                                                   std::string(2000, 'x'), R"("})"));
  EXPECT_EQ(big.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(big.status.error_message(), HasSubstr("over the limit of 1024"));
  RawResult huge = RawCall(kGetMethod, absl::StrCat(R"({"group":"scores","key":"Tom","pad":")",
                                                    std::string(5000, 'x'), R"("})"));
  EXPECT_EQ(huge.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  RawResult unknown = RawCall("/lcache.LCache/Put", R"({"group":"scores","key":"Tom"})");
  EXPECT_EQ(unknown.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  RawResult other_service = RawCall("/other.Service/Get", R"({"group":"scores","key":"Tom"})");
  EXPECT_EQ(other_service.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);

  EXPECT_EQ(loads_.load(), 0);
  RawResult tom = RawCall(kGetMethod, R"({"group":"scores","key":"Tom"})");
  ASSERT_TRUE(tom.status.ok()) << tom.status.error_message();
  EXPECT_EQ(tom.body, R"({"value":"NjMw"})");
  std::shared_ptr<PeerGetter> client = Client();
  absl::StatusOr<PeerValue> value = client->Get("scores", "Tom");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->value, "630");
}

TEST_P(GrpcPeerTest, UnmarkedRequestsAreRoutedMarkedOnesLoadedLocally) {
  StartServer();
  std::shared_ptr<PeerGetter> client = Client(/*mark_forwarded=*/false);
  std::shared_ptr<PeerGetter> peer = Client(/*mark_forwarded=*/true);

  absl::StatusOr<PeerValue> routed = client->Get("routed", "Tom");
  ASSERT_TRUE(routed.ok()) << routed.status();
  EXPECT_EQ(routed->value, "from-peer");
  EXPECT_EQ(picker_.peer->calls.load(), 1);
  EXPECT_EQ(loads_.load(), 0);

  absl::StatusOr<PeerValue> local = peer->Get("routed", "Jack");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(local->value, "589");
  EXPECT_EQ(picker_.peer->calls.load(), 1);
  EXPECT_EQ(loads_.load(), 1);
}

TEST_P(GrpcPeerTest, SlowLoadDoesNotBlockHits) {
  StartServer({.load_threads = 1});
  std::shared_ptr<PeerGetter> client = Client();
  ASSERT_TRUE(client->Get("scores", "Tom").ok());  // now cached

  std::thread slow([&] {
    absl::StatusOr<PeerValue> v = client->Get("scores", "slow-1");
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->value, "value-of-slow-1");
  });
  gate_.AwaitWaiters(1);  // the only load thread is now stuck

  // Answered on the polling thread, while the load thread is held.
  absl::StatusOr<PeerValue> hit = client->Get("scores", "Tom");
  ASSERT_TRUE(hit.ok()) << hit.status();
  EXPECT_EQ(hit->value, "630");

  gate_.Open();
  slow.join();
}

TEST_P(GrpcPeerTest, FullLoadQueueAnswersResourceExhausted) {
  StartServer({.load_threads = 1, .max_queued_loads = 1});
  Group* scores = registry_.GetGroup("scores");
  std::shared_ptr<PeerGetter> client = Client();

  std::thread running([&] { EXPECT_TRUE(client->Get("scores", "slow-1").ok()); });
  gate_.AwaitWaiters(1);
  std::thread queued([&] { EXPECT_TRUE(client->Get("scores", "slow-2").ok()); });
  // The polling thread counts a request and queues its load in one step, and
  // handles the next request only after that, so once the count shows the
  // second request, the next miss finds the queue full.
  while (scores->Stats().server_requests < 2) std::this_thread::yield();

  absl::StatusOr<PeerValue> refused = client->Get("scores", "slow-3");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.status().message(), "lcache: server overloaded, 1 loads queued");

  gate_.Open();
  running.join();
  queued.join();
  absl::StatusOr<PeerValue> later = client->Get("scores", "slow-3");
  EXPECT_TRUE(later.ok()) << later.status();
}

// gRPC times a deadline on its own monotonic clock, converted from the wall
// clock the test reads, so "not before the deadline" holds to within that
// conversion: a call once ended 13 µs before it by absl::Now (1 in ~2,000).
constexpr absl::Duration kClockSkew = absl::Milliseconds(2);

TEST_P(GrpcPeerTest, ClientDeadline) {
  StartServer();
  std::shared_ptr<PeerGetter> client = Client(false, absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  absl::StatusOr<PeerValue> v = client->Get("scores", "slow-1");
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded) << v.status();
  EXPECT_GE(took, absl::Milliseconds(300) - kClockSkew);
  EXPECT_LT(took, absl::Milliseconds(300) + absl::Seconds(2));
}

// A miss still queued when its caller's deadline passes is dropped, not
// loaded, and counted in loads_cancelled.
TEST_P(GrpcPeerTest, AQueuedLoadPastItsDeadlineIsDroppedAndCounted) {
  StartServer({.load_threads = 1});
  std::thread holder = HoldTheLoadThread();
  constexpr absl::Duration kTimeout = absl::Milliseconds(100);
  QueueACallThatExpires(kTimeout, 2, [&] {
    absl::StatusOr<PeerValue> v = Client(false, kTimeout)->Get("scores", "slow-2");
    EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded) << v.status();
  });
  ExpectTheQueuedLoadDropped(holder, 1);  // slow-1 only
}

// StartGet with the caller's deadline, waited for.
absl::StatusOr<PeerValue> GetBefore(PeerGetter& peer, std::string_view group, std::string_view key,
                                    absl::Time deadline) {
  absl::StatusOr<PeerValue> value;
  absl::Notification done;
  EXPECT_TRUE(peer.StartGet(
      group, key, deadline,
      [&](absl::StatusOr<PeerValue> v) {
        value = std::move(v);
        done.Notify();
      },
      nullptr));
  done.WaitForNotification();
  return value;
}

// The caller's deadline, not the client's timeout, ends a call that comes
// first; a deadline that left the call under half its timeout is marked as
// the caller's, so that outlier ejection does not count it against the peer.
TEST_P(GrpcPeerTest, TheCallersDeadlineCutsAPeerCallShortAndIsMarked) {
  StartServer();
  std::shared_ptr<PeerGetter> client = Client(false, absl::Seconds(10));
  absl::Time start = absl::Now();
  absl::StatusOr<PeerValue> v =
      GetBefore(*client, "scores", "slow-1", start + absl::Milliseconds(200));
  absl::Duration took = absl::Now() - start;
  EXPECT_TRUE(absl::IsDeadlineExceeded(v.status())) << v.status();
  EXPECT_TRUE(IsCallerDeadline(v.status()));
  EXPECT_FALSE(IsPeerFailure(v.status()));
  EXPECT_GE(took, absl::Milliseconds(200) - kClockSkew);
  EXPECT_LT(took, absl::Seconds(5));
  // 250 ms of a 300 ms timeout: the peer had its chance, so it counts.
  client = Client(false, absl::Milliseconds(300));
  start = absl::Now();
  v = GetBefore(*client, "scores", "slow-2", start + absl::Milliseconds(250));
  EXPECT_TRUE(absl::IsDeadlineExceeded(v.status())) << v.status();
  EXPECT_FALSE(IsCallerDeadline(v.status()));
  EXPECT_TRUE(IsPeerFailure(v.status()));
  // A deadline already past fails the call without a load.
  const int loads_before = loads_;
  v = GetBefore(*client, "scores", "slow-3", absl::Now() - absl::Seconds(1));
  EXPECT_TRUE(absl::IsDeadlineExceeded(v.status())) << v.status();
  gate_.Open();
  EXPECT_EQ(loads_, loads_before);
}

// The deadline travels as grpc-timeout: the owner drops a load queued past
// the caller's deadline (150 ms), although the client's own timeout is 10 s.
TEST_P(GrpcPeerTest, TheCallersDeadlineTravelsToTheOwner) {
  StartServer({.load_threads = 1});
  std::thread holder = HoldTheLoadThread();
  constexpr absl::Duration kDeadline = absl::Milliseconds(150);
  QueueACallThatExpires(kDeadline, 2, [&] {
    absl::StatusOr<PeerValue> v =
        GetBefore(*Client(false, absl::Seconds(10)), "scores", "slow-2", absl::Now() + kDeadline);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded) << v.status();
  });
  ExpectTheQueuedLoadDropped(holder, 1);  // slow-1 only
}

// A queued miss whose caller gives up (the client cancels: a reset stream)
// is dropped, not loaded, and counted, on both servers.
TEST_P(GrpcPeerTest, AQueuedLoadWhoseCallerLeftIsDropped) {
  StartServer({.load_threads = 1});
  Group* scores = registry_.GetGroup("scores");
  std::shared_ptr<PeerGetter> client = Client();
  ASSERT_TRUE(client->Get("scores", "Tom").ok());  // cached: a hit from now on
  std::thread holder = HoldTheLoadThread();
  absl::Notification answered;
  absl::Status answer;
  PeerGetter::Cancel cancel;
  ASSERT_TRUE(client->StartGet(
      "scores", "slow-2", absl::InfiniteFuture(),
      [&](absl::StatusOr<PeerValue> v) {
        answer = v.status();
        answered.Notify();
      },
      &cancel));
  while (scores->Stats().server_requests < 3) std::this_thread::yield();
  cancel();
  answered.WaitForNotification();
  EXPECT_TRUE(absl::IsCancelled(answer)) << answer;
  // A barrier: a hit on the same connection, whose frames follow the reset,
  // so the server has seen the reset before the load thread frees up.
  EXPECT_TRUE(client->Get("scores", "Tom").ok());
  ExpectTheQueuedLoadDropped(holder, 2);  // Tom and slow-1, not slow-2
}

// The lean client keeps one timer per connection, for the earliest of its
// calls' deadlines: calls with different timeouts on one connection (the
// longest first, so that later calls take the head) each fail at their own
// deadline, in deadline order, and none early; a call that is answered in
// between leaves the others' deadlines alone.
TEST_P(GrpcPeerTest, LeanClientDeadlinesOnOneConnection) {
  if (GetParam() == Transport::kGrpc) {
    // gRPC C++ enforces grpc-timeout with its own (cached) clock, so it may
    // answer DEADLINE_EXCEEDED microseconds before the client's deadline:
    // the server's verdict, not the client's timer, which is tested here.
    GTEST_SKIP() << "the client's timer is tested against the lean server";
  }
  StartServer();
  absl::StatusOr<std::unique_ptr<internal::H2Client>> client = internal::H2Client::Create();
  ASSERT_TRUE(client.ok()) << client.status();
  std::shared_ptr<internal::H2Client::Connection> connection = (*client)->Open(Address());

  struct Outcome {
    std::string key;
    absl::Duration timeout;
    absl::Time issued;
    absl::Time done;
    absl::StatusCode code = absl::StatusCode::kUnknown;
  };
  const std::vector<std::pair<std::string, absl::Duration>> calls = {
      {"slow-1", absl::Milliseconds(400)}, {"slow-2", absl::Milliseconds(150)},
      {"Tom", absl::Milliseconds(300)},    {"slow-3", absl::Milliseconds(250)},
      {"slow-4", absl::Milliseconds(50)},  {"slow-5", absl::Milliseconds(250)},
  };
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Outcome> finished;  // in the order the calls finished
  // Issued from the loop thread, so that all are queued before any runs.
  (*client)->RunInLoop([&] {
    for (const auto& [key, timeout] : calls) {
      internal::H2Client::CallOptions options{.path = std::string(kGetMethod), .timeout = timeout};
      Outcome outcome;
      outcome.key = key;
      outcome.timeout = timeout;
      outcome.issued = absl::Now();
      (*client)->Call(connection, options, wire::EncodeGetRequest("scores", key),
                      [&, outcome](absl::Status status, std::string_view) mutable {
                        outcome.done = absl::Now();
                        outcome.code = status.code();
                        std::lock_guard lock(mu);
                        finished.push_back(outcome);
                        cv.notify_one();
                      });
    }
  });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return finished.size() == calls.size(); });
  }

  std::vector<std::string> order;  // of the calls that expired
  for (const Outcome& o : finished) {
    if (o.key == "Tom") {
      // When it is answered depends on the server's threads; that it is
      // answered, and the others still fail at their deadlines, does not.
      EXPECT_EQ(o.code, absl::StatusCode::kOk);
      continue;
    }
    order.push_back(o.key);
    EXPECT_EQ(o.code, absl::StatusCode::kDeadlineExceeded) << o.key;
    EXPECT_GE(o.done - o.issued, o.timeout) << o.key << " failed before its deadline";
    EXPECT_LT(o.done - o.issued, o.timeout + absl::Seconds(2)) << o.key;
  }
  // Equal deadlines keep the order the calls were made in.
  EXPECT_THAT(order, ::testing::ElementsAre("slow-4", "slow-2", "slow-3", "slow-5", "slow-1"));
}

TEST_P(GrpcPeerTest, DeadAddressIsUnavailable) {
  // Nothing listens on port 1 of the loopback (a privileged port).
  std::shared_ptr<PeerGetter> client =
      NewClientOn(GetParam(), "127.0.0.1:1", {.timeout = absl::Seconds(2)});
  const absl::Time start = absl::Now();
  absl::StatusOr<PeerValue> v = client->Get("scores", "Tom");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kUnavailable) << v.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2) + absl::Seconds(1));
  // The channel is reused after a failure and fails the same way.
  EXPECT_EQ(client->Get("scores", "Tom").status().code(), absl::StatusCode::kUnavailable);
}

TEST_P(GrpcPeerTest, ShutdownLetsACallInFlightFinish) {
  StartServer();
  std::shared_ptr<PeerGetter> client = Client();
  std::thread call([&] {
    absl::StatusOr<PeerValue> v = client->Get("scores", "slow-1");
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->value, "value-of-slow-1");
  });
  gate_.AwaitWaiters(1);

  const absl::Time start = absl::Now();
  std::thread shutdown([&] { server_->Shutdown(absl::Seconds(30)); });
  gate_.Open();
  call.join();
  shutdown.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));

  // Stopped: new calls fail, and a second Shutdown is a no-op.
  EXPECT_EQ(client->Get("scores", "Tom").status().code(), absl::StatusCode::kUnavailable);
  server_->Shutdown(absl::Seconds(30));
}

TEST_P(GrpcPeerTest, ShutdownCancelsCallsAfterGraceAndSkipsQueuedLoads) {
  StartServer({.load_threads = 1, .max_queued_loads = 1});
  Group* scores = registry_.GetGroup("scores");
  std::shared_ptr<PeerGetter> client = Client();
  absl::Notification running_failed, queued_failed;
  std::thread running([&] {
    EXPECT_FALSE(client->Get("scores", "slow-1").ok());
    running_failed.Notify();
  });
  gate_.AwaitWaiters(1);
  std::thread queued([&] {
    EXPECT_FALSE(client->Get("scores", "slow-2").ok());
    queued_failed.Notify();
  });
  while (scores->Stats().server_requests < 2) std::this_thread::yield();

  std::thread shutdown([&] { server_->Shutdown(absl::Milliseconds(100)); });
  // The clients see the cancellation while the getter is still blocked.
  running_failed.WaitForNotification();
  queued_failed.WaitForNotification();
  gate_.Open();  // a running getter cannot be interrupted; Shutdown waits for it
  running.join();
  queued.join();
  shutdown.join();
  EXPECT_EQ(loads_.load(), 1);  // slow-2 was never loaded
}

// A server going away sends GOAWAY and still answers the calls it has. A
// call the lean client starts after reading that GOAWAY (here: from the
// answer's `done`, which runs after every frame before it) is not failed:
// it waits for the connection's last stream, then goes out on a new
// connection, to the server that took the port over.
TEST_P(GrpcPeerTest, ALeanCallStartedAfterGoawayGoesOutOnTheNextConnection) {
  StartServer();
  const std::string address = Address();
  absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create();
  ASSERT_TRUE(client.ok()) << client.status();
  std::shared_ptr<PeerGetter> peer = (*client)->NewGetter(address, {.timeout = absl::Seconds(20)});
  absl::StatusOr<PeerValue> first, second;
  absl::Notification second_done;
  ASSERT_TRUE(peer->StartGet(
      "scores", "slow-1", absl::InfiniteFuture(),
      [&](absl::StatusOr<PeerValue> v) {
        first = std::move(v);
        ASSERT_TRUE(peer->StartGet(
            "scores", "Tom", absl::InfiniteFuture(),
            [&](absl::StatusOr<PeerValue> w) {
              second = std::move(w);
              second_done.Notify();
            },
            nullptr));
      },
      nullptr));
  gate_.AwaitWaiters(1);

  std::thread shutdown([&] { server_->Shutdown(absl::Seconds(30)); });
  absl::Cleanup join_shutdown = [&] {
    gate_.Open();
    shutdown.join();
  };
  // The old server closes its listener first, then sends GOAWAY.
  std::unique_ptr<PeerServer> next;
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (next == nullptr && absl::Now() < give_up) {
    absl::StatusOr<std::unique_ptr<PeerServer>> started =
        StartH2PeerServer({.address = address, .registry = &registry_});
    if (started.ok()) {
      next = *std::move(started);
    } else {
      std::this_thread::yield();
    }
  }
  ASSERT_NE(next, nullptr) << "the old server kept its port";
  gate_.Open();
  ASSERT_TRUE(second_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->value, "value-of-slow-1");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->value, "630");
  next->Shutdown(absl::ZeroDuration());
}

// A peer whose answer is already on its way: a reset does not stop it, and
// the test sends it when it likes, from its own thread.
class LatePeer final : public PeerGetter, public PeerPicker {
 public:
  absl::StatusOr<PeerValue> Get(std::string_view, std::string_view) override {
    return absl::UnimplementedError("asynchronous only");
  }
  bool StartGet(std::string_view, std::string_view, absl::Time, Done done,
                Cancel* cancel) override {
    if (cancel != nullptr) *cancel = [] {};
    std::lock_guard lock(mu_);
    pending_.push_back(std::move(done));
    cv_.notify_all();
    return true;
  }
  std::shared_ptr<PeerGetter> PickPeer(std::string_view) override {
    return std::shared_ptr<PeerGetter>(this, [](PeerGetter*) {});
  }
  void AwaitCall() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !pending_.empty(); });
  }
  void AnswerAll() {
    std::vector<Done> pending;
    {
      std::lock_guard lock(mu_);
      pending.swap(pending_);
    }
    for (Done& done : pending) done(ByteView::Copy("late"));
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Done> pending_;
};

// A routed miss whose peer answers after the server began to stop, and
// after gRPC cancelled the call: the reply goes nowhere, harmlessly (the
// gRPC server waits for it before it lets its queue go; a node SIGTERMed
// mid-forward used to crash here), and Shutdown returns.
TEST_P(GrpcPeerTest, APeerAnswerArrivingDuringShutdownIsHarmless) {
  LatePeer late;
  Getter local = [](std::string_view) -> absl::StatusOr<Loaded> { return ByteView::Copy("x"); };
  ASSERT_TRUE(registry_.NewGroup({.name = "late", .getter = local, .peers = &late}).ok());
  StartServer();
  std::shared_ptr<PeerGetter> client = Client();
  std::thread call([&] { EXPECT_FALSE(client->Get("late", "k").ok()); });
  late.AwaitCall();
  absl::Notification stopped;
  std::thread shutdown([&] {
    server_->Shutdown(absl::ZeroDuration());
    stopped.Notify();
  });
  call.join();  // the server cancelled it
  // Gives an early Shutdown time to return (the old gRPC server did, and
  // the answer below then used its destroyed queue).
  stopped.WaitForNotificationWithTimeout(absl::Milliseconds(300));
  late.AnswerAll();
  shutdown.join();
  server_.reset();
}

// A stop in the middle of traffic: calls whose request the server has read
// when it stops are still being answered by its polling thread, and hits
// are answered there at once. Shutdown must neither hang nor let one of
// them start an operation on the closed queue (gRPC aborts the process);
// every call ends, answered or failed, and (under ASan) nothing leaks.
TEST_P(GrpcPeerTest, ShutdownInTheMiddleOfTrafficEndsEveryCall) {
  // Every call in flight when the server stops is answered correctly or
  // ended by the server with an error: none is left to run into the
  // client's deadline, and none gets a wrong value.
  for (int round = 0; round < 5; ++round) {
    StartServer();
    std::atomic<int> answered{0};
    std::atomic<int> wrong{0};
    std::atomic<int> timed_out{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> callers;
    for (int t = 0; t < 3; ++t) {
      callers.emplace_back([&, client = Client(false, absl::Seconds(20))] {
        while (!stop.load()) {
          absl::StatusOr<PeerValue> v = client->Get("scores", "Tom");
          if (v.ok()) {
            answered.fetch_add(1);
            if (v->value != "630") wrong.fetch_add(1);
          } else if (absl::IsDeadlineExceeded(v.status())) {
            timed_out.fetch_add(1);
          }
        }
      });
    }
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (answered.load() < 20 && absl::Now() < give_up) std::this_thread::yield();
    const bool served = answered.load() >= 20;
    server_->Shutdown(absl::ZeroDuration());
    stop = true;
    for (std::thread& c : callers) c.join();
    server_.reset();
    ASSERT_TRUE(served) << "the server answered " << answered.load() << " calls in 30 s";
    EXPECT_EQ(wrong.load(), 0) << "round " << round;
    EXPECT_EQ(timed_out.load(), 0) << "round " << round << ": calls left to their deadline";
  }
}

TEST_P(GrpcPeerTest, RejectsInvalidOptionsAndTakenAddresses) {
  GroupRegistry registry;
  EXPECT_EQ(StartServerOn(GetParam(), {.address = "127.0.0.1:0"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StartServerOn(GetParam(),
                          {.address = "127.0.0.1:0", .registry = &registry, .load_threads = 0})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::unique_ptr<PeerServer>> first =
      StartServerOn(GetParam(), {.address = "127.0.0.1:0", .registry = &registry});
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<PeerServer>> second = StartServerOn(
      GetParam(), {.address = absl::StrCat("127.0.0.1:", (*first)->port()), .registry = &registry});
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("cannot listen"));
}

// A peer that accepts connections and then never reads or answers: a
// stopped process, or one cut off after the handshake. Counts connections.
class BlackHole {
 public:
  BlackHole() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 50) == 1) {
          const int c = accept(fd_, nullptr, nullptr);
          if (c >= 0) {
            std::lock_guard lock(mu_);
            accepted_.push_back(c);  // held open, never read
          }
        }
      }
    });
  }
  ~BlackHole() {
    stop_ = true;
    thread_.join();
    for (int c : accepted_) close(c);
    close(fd_);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  size_t accepted() {
    std::lock_guard lock(mu_);
    return accepted_.size();
  }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<int> accepted_;
};

// A lean connection on which a call timed out is sent a PING; when nothing
// answers it, the connection is dropped and the next call opens a new one,
// instead of queueing behind a socket that will never answer.
TEST(LeanClientLivenessTest, AConnectionThatStopsAnsweringIsReplaced) {
  BlackHole hole;
  absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create();
  ASSERT_TRUE(client.ok());
  std::shared_ptr<PeerGetter> peer =
      (*client)->NewGetter(hole.address(), {.timeout = absl::Milliseconds(200)});
  absl::StatusOr<PeerValue> v = peer->Get("scores", "Tom");
  EXPECT_TRUE(absl::IsDeadlineExceeded(v.status())) << v.status();
  EXPECT_EQ(hole.accepted(), 1u);
  // Within the PING's second (and some slack) the calls go out on a new
  // connection (a call in flight when the old one is dropped fails at once).
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (hole.accepted() < 2 && absl::Now() < give_up) {
    v = peer->Get("scores", "Tom");
    if (absl::IsUnavailable(v.status())) {
      EXPECT_THAT(std::string(v.status().message()), HasSubstr("no answer to a PING"));
    } else {
      EXPECT_TRUE(absl::IsDeadlineExceeded(v.status())) << v.status();
    }
  }
  EXPECT_EQ(hole.accepted(), 2u);
}

// "scores", where every key's value is 630.
absl::Status AddScores(GroupRegistry& registry) {
  return registry
      .NewGroup({.name = "scores",
                 .getter = [](std::string_view) -> absl::StatusOr<Loaded> {
                   return ByteView::Copy("630");
                 }})
      .status();
}

// The lean client PINGs a connection that carries calls once a second:
// when the round trips of a link rise far above their usual (here, a proxy
// delays what the server sends by 100 ms), the getter says the link is slow
// (outlier ejection then takes the peer out, ring_picker_test), and when
// they are back, that it is not.
TEST(LeanClientSlowLinkTest, ALinkWhoseRoundTripsRiseIsSlowThenBack) {
  GroupRegistry registry;
  ASSERT_TRUE(AddScores(registry).ok());
  absl::StatusOr<std::unique_ptr<PeerServer>> server =
      StartH2PeerServer({.address = "127.0.0.1:0", .registry = &registry});
  ASSERT_TRUE(server.ok()) << server.status();
  testing::DelayProxy proxy((*server)->port());
  absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create();
  ASSERT_TRUE(client.ok());
  std::shared_ptr<PeerGetter> peer =
      (*client)->NewGetter(absl::StrCat("127.0.0.1:", proxy.port()), {.timeout = absl::Seconds(5)});
  // Calls until `done` says so, or `limit` passes; whether it did.
  const auto call_until = [&](absl::Duration limit, const std::function<bool()>& done) {
    const absl::Time give_up = absl::Now() + limit;
    while (absl::Now() < give_up) {
      absl::StatusOr<PeerValue> v = peer->Get("scores", "Tom");
      EXPECT_TRUE(v.ok()) << v.status();  // slow, never failed
      if (done()) return true;
    }
    return false;
  };

  // Four seconds of the link's usual round trips (microseconds here): more
  // than the three in a row a slow link takes, and none is slow.
  EXPECT_FALSE(call_until(absl::Seconds(4), [&] { return !peer->Slowness().ok(); }));
  proxy.SetDelay(absl::Milliseconds(100));
  ASSERT_TRUE(call_until(absl::Seconds(15), [&] { return !peer->Slowness().ok(); }))
      << "100 ms round trips over a usual of microseconds were not judged slow";
  EXPECT_THAT(std::string(peer->Slowness().message()),
              MatchesRegex(".*the link to 127.0.0.1:[0-9]+ is slow: PING round trip .*"));
  // Back at the next round trip, well before a slow verdict would go stale.
  proxy.SetDelay(absl::ZeroDuration());
  EXPECT_TRUE(call_until(absl::Seconds(3), [&] { return peer->Slowness().ok(); }));
}

// When most of a client's links slow down at once, the trouble is more
// likely the client's own (a loop too busy to read its answers): none is
// judged slow. When one alone is slow, it is.
TEST(LeanClientSlowLinkTest, LinksThatAllSlowDownAtOnceAreNotJudgedSlow) {
  GroupRegistry registry;
  ASSERT_TRUE(AddScores(registry).ok());
  absl::StatusOr<std::unique_ptr<PeerServer>> a =
      StartH2PeerServer({.address = "127.0.0.1:0", .registry = &registry});
  absl::StatusOr<std::unique_ptr<PeerServer>> b =
      StartH2PeerServer({.address = "127.0.0.1:0", .registry = &registry});
  ASSERT_TRUE(a.ok() && b.ok());
  testing::DelayProxy proxy_a((*a)->port()), proxy_b((*b)->port());
  absl::StatusOr<std::shared_ptr<H2PeerClient>> client = H2PeerClient::Create();
  ASSERT_TRUE(client.ok());
  std::shared_ptr<PeerGetter> peer_a = (*client)->NewGetter(
      absl::StrCat("127.0.0.1:", proxy_a.port()), {.timeout = absl::Seconds(5)});
  std::shared_ptr<PeerGetter> peer_b = (*client)->NewGetter(
      absl::StrCat("127.0.0.1:", proxy_b.port()), {.timeout = absl::Seconds(5)});
  // Both peers asked in turn, from two threads (a slow call to one must not
  // starve the other's round trips); whether `bad` held after any call.
  const auto call_both_for = [&](absl::Duration d, const std::function<bool()>& bad) {
    std::atomic<bool> seen{false};
    const absl::Time until = absl::Now() + d;
    auto ask = [&](PeerGetter& peer) {
      while (absl::Now() < until && !seen) {
        EXPECT_TRUE(peer.Get("scores", "Tom").ok());
        if (bad()) seen = true;
      }
    };
    std::thread other([&] { ask(*peer_b); });
    ask(*peer_a);
    other.join();
    return seen.load();
  };
  const auto either_slow = [&] { return !peer_a->Slowness().ok() || !peer_b->Slowness().ok(); };
  EXPECT_FALSE(call_both_for(absl::Seconds(4), either_slow));
  proxy_a.SetDelay(absl::Milliseconds(100));
  proxy_b.SetDelay(absl::Milliseconds(100));
  EXPECT_FALSE(call_both_for(absl::Seconds(6), either_slow))
      << "links that slowed down together were judged slow";
  proxy_b.SetDelay(absl::ZeroDuration());
  EXPECT_TRUE(call_both_for(absl::Seconds(15), [&] { return !peer_a->Slowness().ok(); }))
      << "the one slow link left was not judged slow";
  EXPECT_TRUE(peer_b->Slowness().ok());
}

INSTANTIATE_TEST_SUITE_P(Transports, GrpcPeerTest,
                         ::testing::Values(Transport::kGrpc, Transport::kLean), TransportName);

}  // namespace
}  // namespace lcache
