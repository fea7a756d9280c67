// Links lcache::h2 from the installed package: a lean server for a group of
// its own on a free loopback port, asked through the lean client.
#include <lcache/h2_peer.h>

#include <cstdio>
#include <string>

int main() {
  lcache::GroupRegistry registry;
  if (!registry
           .NewGroup({.name = "scores",
                      .cache_bytes = 1 << 20,
                      .getter = [](std::string_view key) -> absl::StatusOr<lcache::Loaded> {
                        if (key == "Tom") return lcache::ByteView::Copy("630");
                        return lcache::KeyNotFoundError();
                      }})
           .ok()) {
    return 1;
  }
  auto server = lcache::StartH2PeerServer({.address = "127.0.0.1:0", .registry = &registry});
  if (!server.ok()) {
    std::fprintf(stderr, "server: %s\n", server.status().ToString().c_str());
    return 2;
  }
  auto client = lcache::H2PeerClient::Create();
  if (!client.ok()) return 3;
  auto peer = (*client)->NewGetter("127.0.0.1:" + std::to_string((*server)->port()));
  absl::StatusOr<lcache::PeerValue> tom = peer->Get("scores", "Tom");
  if (!tom.ok() || tom->value.view() != "630") {
    std::fprintf(stderr, "Tom: %s\n", tom.status().ToString().c_str());
    return 4;
  }
  (*server)->Shutdown(absl::ZeroDuration());
  std::printf("h2 consumer: Tom=630\n");
  return 0;
}
