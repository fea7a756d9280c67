// lcache-cli: asks a node (C++ or Go) for a key over the peer protocol.
//
//   lcache-cli get -addr 127.0.0.1:9001 -group scores -key Tom
//
// Prints the value's bytes to stdout and exits 0; on error prints it to
// stderr and exits 1 for a key that is not found, 2 for anything else
// (unreachable, deadline, bad input). The request carries no forwarding
// mark, so the node routes it by its ring like any client request.

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "go_flags.h"
#include "lcache/grpc_peer.h"
#include "lcache/h2_peer.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:9000", "the node to ask");
ABSL_FLAG(std::string, group, "scores", "the group");
ABSL_FLAG(std::string, key, "", "the key");
ABSL_FLAG(int64_t, timeout_ms, 2000, "deadline of the call");
ABSL_FLAG(std::string, transport, "lean",
          "lean (nghttp2; content-type application/grpc+json, as Go clients send) or grpc "
          "(gRPC C++)");

int main(int argc, char** argv) {
  const std::vector<std::string> positional = lcache::tools::ParseGoStyleCommandLine(
      argc, argv,
      "lcache-cli get -addr HOST:PORT -group GROUP -key KEY\n"
      "Exit status: 0 found, 1 not found, 2 any other error.",
      "lcache_cli.cc");
  if (positional.size() != 2 || positional[1] != "get") {
    std::cerr << "usage: lcache-cli get -addr HOST:PORT -group GROUP -key KEY\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_timeout_ms) <= 0) {
    std::cerr << "-timeout-ms must be > 0\n";
    return 2;
  }
  const lcache::PeerClientOptions options{
      .timeout = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms)), .mark_forwarded = false};
  std::shared_ptr<lcache::PeerGetter> peer;
  if (absl::GetFlag(FLAGS_transport) == "grpc") {
    peer = lcache::NewGrpcPeerGetter(absl::GetFlag(FLAGS_addr), options);
  } else if (absl::GetFlag(FLAGS_transport) == "lean") {
    absl::StatusOr<std::shared_ptr<lcache::H2PeerClient>> client = lcache::H2PeerClient::Create();
    if (!client.ok()) {
      std::cerr << client.status().message() << "\n";
      return 2;
    }
    peer = (*client)->NewGetter(absl::GetFlag(FLAGS_addr), options);
  } else {
    std::cerr << "-transport must be lean or grpc\n";
    return 2;
  }
  absl::StatusOr<lcache::PeerValue> v =
      peer->Get(absl::GetFlag(FLAGS_group), absl::GetFlag(FLAGS_key));
  if (v.ok()) {
    std::fwrite(v->value.data(), 1, v->value.size(), stdout);
    return 0;
  }
  std::cerr << v.status().message() << "\n";
  return absl::IsNotFound(v.status()) ? 1 : 2;
}
