// lcache-node: one cache node. Serves one group over the peer protocol
// (gRPC + JSON, wire-compatible with the Go lru_cache) and routes misses to
// the key's owner by consistent hashing over a static peer list.
//
//   lcache-node -addr 127.0.0.1:9001 -peers 127.0.0.1:9001,127.0.0.1:9002
//
// SIGINT/SIGTERM: stop accepting, let calls in flight finish within
// -grace-ms, exit 0.

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "go_flags.h"
#include "lcache/group.h"
#include "lcache/grpc_peer.h"
#include "lcache/ring_picker.h"
#include "node_source.h"
#include "spdlog/spdlog.h"

// The Go program's flags, with its defaults.
ABSL_FLAG(std::string, addr, "127.0.0.1:9000",
          "gRPC listen address, also this node's identity on the ring");
ABSL_FLAG(std::string, svc, "lcache", "service name (etcd prefix)");
ABSL_FLAG(std::string, peers, "", "comma-separated static peer addresses (include this node)");
ABSL_FLAG(std::string, etcd, "", "comma-separated etcd endpoints (not available yet)");
ABSL_FLAG(std::string, get, "", "a key to fetch through the group once at start, logging it");
ABSL_FLAG(int64_t, cache_mb, 64, "cache size in MiB (len(key) + len(value); 0 = unbounded)");
ABSL_FLAG(int64_t, expire_ms, 0, "default entry expiration in ms (0 = none)");
// Ours.
ABSL_FLAG(std::string, group, "scores", "the group's name");
ABSL_FLAG(std::string, store, "lru", "eviction policy: lru, lru2 or tinylfu");
ABSL_FLAG(int64_t, peer_timeout_ms, 2000, "deadline of each call to a peer");
ABSL_FLAG(std::string, source, "demo",
          "the group's data: demo (Tom/Jack/Sam) or synthetic:BYTES[:DELAY_MS]");
ABSL_FLAG(int64_t, max_key_bytes, 4096, "longer keys are rejected");
ABSL_FLAG(int32_t, load_threads, 8, "threads that run loads (misses)");
ABSL_FLAG(int32_t, max_queued_loads, 1024, "loads queued beyond this get RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, grace_ms, 5000, "on SIGTERM, how long calls in flight may take to finish");

namespace lcache {
namespace {

std::vector<std::string> SplitList(const std::string& list) {
  return absl::StrSplit(list, ',', absl::SkipWhitespace());
}

// Logs failed calls to a peer (the group then loads the key itself and counts
// a peer error). Answers from the owner, found or not, are not failures.
class LoggedPeer final : public PeerGetter {
 public:
  LoggedPeer(std::string address, std::shared_ptr<PeerGetter> peer)
      : address_(std::move(address)), peer_(std::move(peer)) {}

  absl::StatusOr<ByteView> Get(std::string_view group, std::string_view key) override {
    absl::StatusOr<ByteView> v = peer_->Get(group, key);
    if (!v.ok() && !absl::IsNotFound(v.status()) && !absl::IsInvalidArgument(v.status())) {
      spdlog::warn("peer {} failed for key={}: {}", address_, key, v.status().ToString());
    }
    return v;
  }

 private:
  const std::string address_;
  const std::shared_ptr<PeerGetter> peer_;
};

// SIGINT and SIGTERM: the signals that stop the node.
sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

int Fail(const std::string& message) {
  spdlog::error("{}", message);
  return 2;
}

int Run() {
  const std::string addr = absl::GetFlag(FLAGS_addr);
  if (!absl::GetFlag(FLAGS_etcd).empty()) {
    return Fail("-etcd: discovery through etcd is not available in this build yet; use -peers");
  }
  const std::optional<StorePolicy> policy = ParseStorePolicy(absl::GetFlag(FLAGS_store));
  if (!policy) return Fail("-store must be lru or lru2, got " + absl::GetFlag(FLAGS_store));
  if (absl::GetFlag(FLAGS_cache_mb) < 0 || absl::GetFlag(FLAGS_expire_ms) < 0 ||
      absl::GetFlag(FLAGS_peer_timeout_ms) <= 0 || absl::GetFlag(FLAGS_max_key_bytes) <= 0) {
    return Fail("-cache-mb and -expire-ms must be >= 0, -peer-timeout-ms and -max-key-bytes > 0");
  }
  absl::StatusOr<Getter> getter = tools::MakeSource(absl::GetFlag(FLAGS_source));
  if (!getter.ok()) return Fail(std::string(getter.status().message()));

  GroupRegistry registry;
  absl::StatusOr<Group*> group = registry.NewGroup({
      .name = absl::GetFlag(FLAGS_group),
      .cache_bytes = absl::GetFlag(FLAGS_cache_mb) << 20,
      .getter = *std::move(getter),
      .policy = *policy,
      .default_ttl = absl::Milliseconds(absl::GetFlag(FLAGS_expire_ms)),
      .max_key_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_key_bytes)),
  });
  if (!group.ok()) return Fail(std::string(group.status().message()));
  if (absl::Status s = registry.StartReclaimer(absl::Seconds(1)); !s.ok()) {
    return Fail(std::string(s.message()));
  }

  const PeerClientOptions client{.timeout =
                                     absl::Milliseconds(absl::GetFlag(FLAGS_peer_timeout_ms))};
  RingPicker picker(addr, [client](const std::string& peer) -> std::shared_ptr<PeerGetter> {
    return std::make_shared<LoggedPeer>(peer, NewGrpcPeerGetter(peer, client));
  });
  RingPicker::Change change = picker.SetPeers(SplitList(absl::GetFlag(FLAGS_peers)));
  spdlog::info("peers: added [{}] removed [{}]", absl::StrJoin(change.added, ","),
               absl::StrJoin(change.removed, ","));
  for (const std::string& bad : change.rejected) spdlog::warn("peer {} rejected", bad);
  (*group)->SetPeerPicker(&picker);

  absl::StatusOr<std::unique_ptr<PeerServer>> server = StartGrpcPeerServer({
      .address = addr,
      .registry = &registry,
      .max_key_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_key_bytes)),
      .load_threads = absl::GetFlag(FLAGS_load_threads),
      .max_queued_loads = absl::GetFlag(FLAGS_max_queued_loads),
  });
  if (!server.ok())
    return Fail("cannot serve on " + addr + ": " + std::string(server.status().message()));
  spdlog::info("lcache-node serving group {} on {} (port {}), store {}, {} MiB", (*group)->name(),
               addr, (*server)->port(), StorePolicyName(*policy), absl::GetFlag(FLAGS_cache_mb));

  if (const std::string key = absl::GetFlag(FLAGS_get); !key.empty()) {
    absl::StatusOr<ByteView> v = (*group)->Get(key);
    if (v.ok()) {
      spdlog::info("get {} = {}", key, v->view());
    } else {
      spdlog::info("get {} failed: {}", key, v.status().ToString());
    }
  }

  // The signals were blocked in main() before any thread started, so only
  // this thread receives them.
  const sigset_t stop_signals = StopSignals();
  int signal = 0;
  sigwait(&stop_signals, &signal);
  spdlog::info("{}: draining (grace {} ms)", signal == SIGINT ? "SIGINT" : "SIGTERM",
               absl::GetFlag(FLAGS_grace_ms));
  (*server)->Shutdown(absl::Milliseconds(absl::GetFlag(FLAGS_grace_ms)));
  spdlog::info("stopped");
  return 0;
}

}  // namespace
}  // namespace lcache

int main(int argc, char** argv) {
  // Block the stop signals before any thread exists, so that every thread
  // inherits the mask and Run()'s sigwait is the one place they arrive.
  const sigset_t stop_signals = lcache::StopSignals();
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  lcache::tools::ParseGoStyleCommandLine(
      argc, argv,
      "lcache-node: a cache node.\n"
      "  lcache-node -addr 127.0.0.1:9001 -peers 127.0.0.1:9001,127.0.0.1:9002\n"
      "Flags take one dash or two; dashes and underscores in names are the same\n"
      "(-cache-mb = --cache_mb).",
      "lcache_node.cc");
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  return lcache::Run();
}
