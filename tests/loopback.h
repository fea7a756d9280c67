// Test helpers for servers on 127.0.0.1: free ports, waiting for a
// condition with a deadline, and one raw gRPC call with hand-written bytes
// (bypassing our codec and clients, as a foreign client would call).

#ifndef LCACHE_TESTS_LOOPBACK_H_
#define LCACHE_TESTS_LOOPBACK_H_

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace lcache::testing {

// `n` distinct loopback ports nothing listens on now: the kernel's picks for
// sockets bound to :0 at the same time, closed again. (A node's address is its
// name on the ring, so it must be known before the node starts.) Another
// process could take one before the node binds it; on a test machine's
// loopback that is rare, and the node then fails to start with a clear error.
inline std::vector<int> UnusedPorts(int n) {
  std::vector<int> fds, ports;
  for (int i = 0; i < n; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) close(fd);
  return ports;
}

// Waits for `condition` for up to 10 s; false if it never held.
template <typename Condition>
bool AwaitTrue(Condition condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

struct RawResult {
  grpc::Status status;
  std::string body;
};

// One unary call of `method` with the message `body`, on `channel`.
inline RawResult RawGrpcCall(const std::shared_ptr<grpc::Channel>& channel,
                             const std::string& method, const std::string& body) {
  grpc::GenericStub stub(channel);
  grpc::Slice slice(body.data(), body.size());
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  RawResult result;
  absl::Notification done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    result.status = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  if (result.status.ok()) {
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(response.Dump(&slices).ok());
    for (const grpc::Slice& s : slices) {
      result.body.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return result;
}

}  // namespace lcache::testing

#endif  // LCACHE_TESTS_LOOPBACK_H_
