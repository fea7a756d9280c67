// Links lcache::node and both transports from the installed package: starts
// a node on a free loopback port and asks it for a key through each
// transport's client.
#include <lcache/grpc_peer.h>
#include <lcache/h2_peer.h>
#include <lcache/node.h>

#include <cstdio>
#include <string>

int main() {
  absl::StatusOr<std::unique_ptr<lcache::Node>> node = lcache::Node::Start({
      .address = "127.0.0.1:0",
      .groups = {{.name = "scores",
                  .cache_bytes = 1 << 20,
                  .getter = [](std::string_view key) -> absl::StatusOr<lcache::Loaded> {
                    if (key == "Tom") return lcache::ByteView::Copy("630");
                    return lcache::KeyNotFoundError();
                  }}},
      .reclaim_interval = absl::ZeroDuration(),
      .grace = absl::ZeroDuration(),
  });
  if (!node.ok()) {
    std::fprintf(stderr, "node: %s\n", node.status().ToString().c_str());
    return 1;
  }
  const std::string address = "127.0.0.1:" + std::to_string((*node)->port());
  auto lean = lcache::H2PeerClient::Create();
  if (!lean.ok()) return 2;
  for (const auto& peer : {(*lean)->NewGetter(address), lcache::NewGrpcPeerGetter(address)}) {
    absl::StatusOr<lcache::PeerValue> tom = peer->Get("scores", "Tom");
    if (!tom.ok() || tom->value.view() != "630") {
      std::fprintf(stderr, "Tom: %s\n", tom.status().ToString().c_str());
      return 3;
    }
    if (!absl::IsNotFound(peer->Get("scores", "Bob").status())) return 4;
  }
  (*node)->Stop();
  std::printf("node consumer: Tom=630 over both transports\n");
  return 0;
}
