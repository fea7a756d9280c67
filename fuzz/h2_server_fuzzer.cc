// libFuzzer target: the lean transport's server (lcache/h2_peer.h) fed raw
// connection bytes, as any client on the network may send them: the HTTP/2
// preface, frames, HPACK headers, gRPC framing and JSON, all in one input.
//
// One server runs for the whole session on 127.0.0.1 (a group "scores" whose
// getter answers any key but "missing-*" and hits for "Tom"). Each input is
// written to a fresh connection, which is then half-closed; the input ends
// when the server closes it or 1 s passes. Crashes, UB and leaks anywhere in
// the server (its loop thread and load threads included) are findings; so
// is a server that stops accepting.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "lcache/group.h"
#include "lcache/h2_peer.h"
#include "lcache/peer_server.h"

namespace {

struct Server {
  lcache::GroupRegistry registry;
  std::unique_ptr<lcache::PeerServer> server;
  int port = 0;

  Server() {
    absl::StatusOr<lcache::Group*> g = registry.NewGroup(
        {.name = "scores",
         .cache_bytes = 1 << 20,
         .getter = [](std::string_view key) -> absl::StatusOr<lcache::Loaded> {
           if (key.starts_with("missing")) return lcache::KeyNotFoundError();
           return lcache::ByteView::Copy("v:" + std::string(key));
         }});
    if (!g.ok()) std::abort();
    (void)(*g)->Get("Tom");  // a hit for the seeds' requests
    absl::StatusOr<std::unique_ptr<lcache::PeerServer>> s = lcache::StartH2PeerServer(
        {.address = "127.0.0.1:0", .registry = &registry, .load_threads = 2}, 1);
    if (!s.ok()) std::abort();
    server = *std::move(s);
    port = server->port();
  }
};

int Connect(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  // Thousands of connections a second leave as many in TIME_WAIT (60 s):
  // spread them over source addresses 127.0.0.2-254, each with its own
  // ephemeral ports, so that a session does not run out of them.
  static uint32_t next_source = 0;
  for (int attempt = 0;; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in source{};
    source.sin_family = AF_INET;
    source.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + next_source++ % 253);
    bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof source);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    const int error = errno;
    close(fd);
    // Out of local ports for a moment, or libFuzzer's timer signal: again.
    // Anything else (refused) means the server stopped accepting: a finding.
    if ((error != EADDRNOTAVAIL && error != EAGAIN && error != EINTR) || attempt == 500) {
      std::fprintf(stderr, "h2_server_fuzzer: connect: %s\n", std::strerror(error));
      std::abort();
    }
    usleep(10000);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Server* const server = new Server();  // for the whole session
  const int fd = Connect(server->port);
  // Write all of it, reading what comes back meanwhile so that neither side
  // blocks on a full buffer; then half-close and drain until the server
  // closes or a second passes.
  size_t sent = 0;
  char buf[16384];
  bool open = true;
  for (int rounds = 0; open && rounds < 1000; ++rounds) {
    pollfd p{.fd = fd, .events = static_cast<short>(POLLIN | (sent < size ? POLLOUT : 0)),
             .revents = 0};
    if (poll(&p, 1, 1000) <= 0) break;
    if (p.revents & POLLOUT) {
      const ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
      if (n < 0) break;  // the server closed on us: fine
      sent += static_cast<size_t>(n);
      if (sent == size) shutdown(fd, SHUT_WR);
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) open = false;
    }
    if (size == 0 && sent == 0) {
      shutdown(fd, SHUT_WR);
      sent = 1;  // nothing to send
    }
  }
  close(fd);
  return 0;
}
