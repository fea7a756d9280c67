// lcache-cli: asks a node (C++ or Go) for a key over the peer protocol, or
// changes one (C++ nodes).
//
//   lcache-cli get -addr 127.0.0.1:9001 -group scores -key Tom
//   lcache-cli set -addr 127.0.0.1:9001 -group scores -key Tom -value 700 [-ttl-ms 60000]
//   lcache-cli rm  -addr 127.0.0.1:9001 -group scores -key Tom
//
// get prints the value's bytes to stdout. Exit status: 0 done; 1 for a key
// that is not found (get); 2 for anything else (unreachable, deadline, bad
// input, an owner that is a Go node). set and rm succeed once the key's owner
// has applied the change and every other node has dropped its copies; nodes
// that did not acknowledge are listed on stderr (still exit 0: they keep a
// copy at most -hot-max-age). The request carries no forwarding mark, so the
// node routes it by its ring like any client request.

#include <cstdio>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_join.h"
#include "go_flags.h"
#include "lcache/grpc_peer.h"
#include "lcache/h2_peer.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:9000", "the node to ask");
ABSL_FLAG(std::string, group, "scores", "the group");
ABSL_FLAG(std::string, key, "", "the key");
ABSL_FLAG(std::string, value, "", "set: the value");
ABSL_FLAG(int64_t, ttl_ms, -1,
          "set: time to live in ms (0 = never expires; not given = the group's default)");
ABSL_FLAG(int64_t, timeout_ms, 2000, "deadline of the call");
ABSL_FLAG(std::string, transport, "lean",
          "lean (nghttp2; content-type application/grpc+json, as Go clients send) or grpc "
          "(gRPC C++)");
ABSL_FLAG(std::string, tls_ca, "",
          "speak TLS, verifying the node against this CA (PEM); \"system\": the system's CAs");
ABSL_FLAG(std::string, tls_cert, "", "TLS: a client certificate (PEM) for nodes that ask for one");
ABSL_FLAG(std::string, tls_key, "", "TLS: the client certificate's key (PEM)");

namespace {

constexpr char kUsage[] =
    "usage: lcache-cli get|set|rm -addr HOST:PORT -group GROUP -key KEY [-value V] [-ttl-ms N]\n"
    "                  [-tls-ca CA.pem|system [-tls-cert CERT.pem -tls-key KEY.pem]]";

int Fail(const absl::Status& status) {
  std::cerr << status.message() << "\n";
  return absl::IsNotFound(status) ? 1 : 2;
}

int Get(lcache::PeerGetter& peer) {
  absl::StatusOr<lcache::PeerValue> v =
      peer.Get(absl::GetFlag(FLAGS_group), absl::GetFlag(FLAGS_key));
  if (!v.ok()) return Fail(v.status());
  std::fwrite(v->value.data(), 1, v->value.size(), stdout);
  return 0;
}

int Mutate(lcache::PeerGetter& peer, lcache::PeerMutation::Kind kind) {
  const std::string group = absl::GetFlag(FLAGS_group);
  const std::string key = absl::GetFlag(FLAGS_key);
  const std::string value = absl::GetFlag(FLAGS_value);
  lcache::PeerMutation mutation{.kind = kind, .group = group, .key = key, .value = value};
  if (const int64_t ttl_ms = absl::GetFlag(FLAGS_ttl_ms); ttl_ms != -1) {
    if (kind != lcache::PeerMutation::Kind::kSet || ttl_ms < 0) {
      std::cerr << "-ttl-ms is for set, and must be >= 0 (0: never expires)\n";
      return 2;
    }
    mutation.ttl = absl::Milliseconds(ttl_ms);
  }
  std::promise<absl::StatusOr<lcache::MutationResult>> promise;
  std::future<absl::StatusOr<lcache::MutationResult>> answer = promise.get_future();
  // The transport ends the call by -timeout-ms, so the wait ends.
  peer.StartMutate(mutation, absl::InfiniteFuture(),
                   [&promise](absl::StatusOr<lcache::MutationResult> r) {
                     promise.set_value(std::move(r));
                   });
  absl::StatusOr<lcache::MutationResult> r = answer.get();
  if (!r.ok()) {
    std::cerr << r.status().message() << "\n";
    return 2;
  }
  if (!r->unacknowledged.empty()) {
    std::cerr << "not acknowledged by " << absl::StrJoin(r->unacknowledged, ", ")
              << " (their copies, if any, live at most -hot-max-age)\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> positional = lcache::tools::ParseGoStyleCommandLine(
      argc, argv,
      "lcache-cli get|set|rm -addr HOST:PORT -group GROUP -key KEY [-value V] [-ttl-ms N]\n"
      "Exit status: 0 done, 1 not found (get), 2 any other error.",
      "lcache_cli.cc");
  const std::string command = positional.size() == 2 ? positional[1] : "";
  if (command != "get" && command != "set" && command != "rm") {
    std::cerr << kUsage << "\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_timeout_ms) <= 0) {
    std::cerr << "-timeout-ms must be > 0\n";
    return 2;
  }
  const lcache::PeerClientOptions options{
      .timeout = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms)), .mark_forwarded = false};
  std::optional<lcache::TlsOptions> tls;
  if (const std::string ca = absl::GetFlag(FLAGS_tls_ca); !ca.empty()) {
    tls = lcache::TlsOptions{.cert_file = absl::GetFlag(FLAGS_tls_cert),
                             .key_file = absl::GetFlag(FLAGS_tls_key),
                             .ca_file = ca == "system" ? "" : ca};
  } else if (!absl::GetFlag(FLAGS_tls_cert).empty() || !absl::GetFlag(FLAGS_tls_key).empty()) {
    std::cerr << "-tls-cert and -tls-key need -tls-ca (a CA file, or system)\n";
    return 2;
  }
  std::shared_ptr<lcache::H2PeerClient> client;  // outlives `peer`
  std::shared_ptr<lcache::PeerGetter> peer;
  if (absl::GetFlag(FLAGS_transport) == "grpc") {
    peer = lcache::NewGrpcPeerGetter(absl::GetFlag(FLAGS_addr), options, tls);
  } else if (absl::GetFlag(FLAGS_transport) == "lean") {
    absl::StatusOr<std::shared_ptr<lcache::H2PeerClient>> created =
        lcache::H2PeerClient::Create(1, tls);
    if (!created.ok()) return Fail(created.status());
    client = *std::move(created);
    peer = client->NewGetter(absl::GetFlag(FLAGS_addr), options);
  } else {
    std::cerr << "-transport must be lean or grpc\n";
    return 2;
  }
  if (command == "get") return Get(*peer);
  return Mutate(*peer, command == "set" ? lcache::PeerMutation::Kind::kSet
                                        : lcache::PeerMutation::Kind::kRemove);
}
