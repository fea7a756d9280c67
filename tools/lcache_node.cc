// lcache-node: one cache node. Serves one group over the peer protocol
// (gRPC + JSON, wire-compatible with the Go lru_cache) and routes misses to
// the key's owner by consistent hashing over the peer set: a static list, or
// the nodes registered in etcd.
//
//   lcache-node -addr 127.0.0.1:9001 -peers 127.0.0.1:9001,127.0.0.1:9002
//   lcache-node -addr 127.0.0.1:9001 -etcd 127.0.0.1:2379
//
// SIGINT/SIGTERM: report not ready (/readyz, gRPC health), revoke the etcd
// lease (peers drop this node at once), keep serving for -drain-delay-ms,
// stop accepting, let calls in flight finish within -grace-ms, exit 0.

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "admin_http.h"
#include "go_flags.h"
#include "lcache/etcd_discovery.h"
#include "lcache/group.h"
#include "lcache/grpc_peer.h"
#include "lcache/h2_peer.h"
#include "lcache/hash_ring.h"
#include "lcache/outlier_ejection.h"
#include "lcache/ring_picker.h"
#include "node_source.h"
#include "spdlog/spdlog.h"

// The Go program's flags, with its defaults.
ABSL_FLAG(std::string, addr, "127.0.0.1:9000",
          "gRPC listen address, also this node's identity on the ring");
ABSL_FLAG(std::string, svc, "lcache", "service name (etcd prefix)");
ABSL_FLAG(std::string, peers, "", "comma-separated static peer addresses (include this node)");
ABSL_FLAG(std::string, etcd, "",
          "comma-separated etcd endpoints (host:port): register there and take the peers from "
          "there; not with -peers");
ABSL_FLAG(std::string, get, "", "a key to fetch through the group once at start, logging it");
ABSL_FLAG(int64_t, cache_mb, 64, "cache size in MiB (len(key) + len(value); 0 = unbounded)");
ABSL_FLAG(int64_t, expire_ms, 0, "default entry expiration in ms (0 = none)");
// Ours.
ABSL_FLAG(std::string, group, "scores", "the group's name");
ABSL_FLAG(std::string, store, "lru", "eviction policy: lru, lru2 or tinylfu");
ABSL_FLAG(int64_t, hot_cache_mb, -1,
          "hot cache for values fetched from peers, in MiB on top of -cache-mb (-1: -cache-mb / 8; "
          "0: none)");
ABSL_FLAG(std::string, hot_promote, "frequency",
          "which fetched values the hot cache keeps: frequency (keys fetched twice recently) or "
          "random (1 in 10, groupcache's rule)");
ABSL_FLAG(int64_t, peer_timeout_ms, 2000, "deadline of each call to a peer");
ABSL_FLAG(std::string, source, "demo",
          "the group's data: demo (Tom/Jack/Sam) or synthetic:BYTES[:DELAY_MS]");
ABSL_FLAG(int64_t, max_key_bytes, 4096, "longer keys are rejected");
ABSL_FLAG(int32_t, load_threads, 8, "threads that run loads (misses)");
ABSL_FLAG(int32_t, max_queued_loads, 1024, "loads queued beyond this get RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, grace_ms, 5000, "on SIGTERM, how long calls in flight may take to finish");
ABSL_FLAG(std::string, transport, "lean",
          "the peer protocol's server and client: lean (nghttp2 + libevent) or grpc (gRPC C++); "
          "the same wire");
ABSL_FLAG(int32_t, io_threads, 1, "lean transport: event-loop threads");
ABSL_FLAG(int64_t, etcd_lease_ttl_s, 10, "TTL of this node's registration in etcd, in seconds");
ABSL_FLAG(int64_t, etcd_start_timeout_ms, 10000,
          "exit with an error if etcd cannot be reached at start within this");
ABSL_FLAG(std::string, etcd_user, "", "etcd user (authentication; with -etcd-password)");
ABSL_FLAG(std::string, etcd_password, "", "etcd password");
ABSL_FLAG(std::string, etcd_ca, "", "CA certificate file: talk TLS to etcd");
ABSL_FLAG(std::string, etcd_cert, "", "client certificate file for etcd (TLS, with -etcd-key)");
ABSL_FLAG(std::string, etcd_key, "", "client key file for etcd");
// The ring and outlier ejection (RingPickerOptions).
ABSL_FLAG(std::string, ring, "groupcache",
          "consistent hashing: groupcache (the Go program's CRC-32 ring; needed with Go nodes) or "
          "balanced (XXH3, 2000 points: even load, C++ nodes only; all nodes must agree)");
ABSL_FLAG(int32_t, eject_after, 3,
          "consecutive failures (unreachable, deadline) that eject a peer: its keys are loaded "
          "locally until a probe succeeds (0 = never eject)");
ABSL_FLAG(int64_t, eject_base_ms, 1000, "first ejection's length, doubled per ejection in a row");
ABSL_FLAG(int64_t, eject_max_ms, 30000, "longest ejection");
// Operations (issue 7): the admin listener and the drain before stopping.
ABSL_FLAG(std::string, http, "",
          "HTTP admin listener host:port (/metrics /healthz /readyz /stats /peers "
          "/groups/G/K); off when empty");
ABSL_FLAG(int64_t, drain_delay_ms, 0,
          "on SIGTERM, how long to keep serving while reporting not ready (so load balancers "
          "and probes notice) before refusing new calls");

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

  absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) override {
    absl::StatusOr<PeerValue> v = peer_->Get(group, key);
    if (!v.ok() && !absl::IsNotFound(v.status()) && !absl::IsInvalidArgument(v.status())) {
      spdlog::warn("peer {} failed for key={}: {}", address_, key, v.status().ToString());
    }
    return v;
  }

 private:
  const std::string address_;
  const std::shared_ptr<PeerGetter> peer_;
};

// Ejections and returns, one line each (counted in RingPicker::ejection_stats).
void LogEjection(const EjectionEvent& e) {
  const std::string address(e.address);
  if (e.kind == EjectionEvent::Kind::kReturned) {
    spdlog::info("peer {} returned: probe answered after {} ms out", address,
                 absl::ToInt64Milliseconds(e.out_for));
  } else {
    spdlog::warn(
        "peer {} ejected for {} ms (ejection {} in a row) after {}: {}; its keys load "
        "locally",
        address, absl::ToInt64Milliseconds(e.backoff), e.streak,
        e.failed_probe ? "a failed probe" : "consecutive failures", e.last_error.ToString());
  }
}

// Swaps `peers` into the picker and logs what changed.
void SetPeers(RingPicker& picker, const std::vector<std::string>& peers) {
  RingPicker::Change change = picker.SetPeers(peers);
  spdlog::info("peers: added [{}] removed [{}]; now {}: [{}]", absl::StrJoin(change.added, ","),
               absl::StrJoin(change.removed, ","), peers.size(), absl::StrJoin(peers, ","));
  for (const std::string& bad : change.rejected) spdlog::warn("peer {} rejected", bad);
}

absl::StatusOr<std::unique_ptr<EtcdDiscovery>> StartDiscovery(const std::string& addr,
                                                              RingPicker& picker) {
  return EtcdDiscovery::Start(
      {
          .endpoints = SplitList(absl::GetFlag(FLAGS_etcd)),
          .service = absl::GetFlag(FLAGS_svc),
          .lease_ttl = absl::Seconds(absl::GetFlag(FLAGS_etcd_lease_ttl_s)),
          .start_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_etcd_start_timeout_ms)),
          .user = absl::GetFlag(FLAGS_etcd_user),
          .password = absl::GetFlag(FLAGS_etcd_password),
          .ca_file = absl::GetFlag(FLAGS_etcd_ca),
          .cert_file = absl::GetFlag(FLAGS_etcd_cert),
          .key_file = absl::GetFlag(FLAGS_etcd_key),
      },
      addr, [&picker](const std::vector<std::string>& peers) { SetPeers(picker, peers); });
}

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
  const bool use_etcd = !absl::GetFlag(FLAGS_etcd).empty();
  if (use_etcd && !absl::GetFlag(FLAGS_peers).empty()) {
    return Fail("-peers and -etcd exclude each other: give the static peer list or etcd");
  }
  if (absl::GetFlag(FLAGS_etcd_lease_ttl_s) <= 0 ||
      absl::GetFlag(FLAGS_etcd_start_timeout_ms) <= 0) {
    return Fail("-etcd-lease-ttl-s and -etcd-start-timeout-ms must be > 0");
  }
  const std::string transport = absl::GetFlag(FLAGS_transport);
  if (transport != "grpc" && transport != "lean") {
    return Fail("-transport must be grpc or lean, got " + transport);
  }
  const std::optional<StorePolicy> policy = ParseStorePolicy(absl::GetFlag(FLAGS_store));
  if (!policy)
    return Fail("-store must be lru, lru2 or tinylfu, got " + absl::GetFlag(FLAGS_store));
  if (absl::GetFlag(FLAGS_cache_mb) < 0 || absl::GetFlag(FLAGS_expire_ms) < 0 ||
      absl::GetFlag(FLAGS_peer_timeout_ms) <= 0 || absl::GetFlag(FLAGS_max_key_bytes) <= 0) {
    return Fail("-cache-mb and -expire-ms must be >= 0, -peer-timeout-ms and -max-key-bytes > 0");
  }
  if (absl::GetFlag(FLAGS_grace_ms) < 0 || absl::GetFlag(FLAGS_drain_delay_ms) < 0) {
    return Fail("-grace-ms and -drain-delay-ms must be >= 0");
  }
  const int64_t hot_cache_mb = absl::GetFlag(FLAGS_hot_cache_mb);
  if (hot_cache_mb < -1) return Fail("-hot-cache-mb must be >= 0 (or -1: -cache-mb / 8)");
  const std::optional<HotPromotion> hot_promotion =
      ParseHotPromotion(absl::GetFlag(FLAGS_hot_promote));
  if (!hot_promotion) {
    return Fail("-hot-promote must be frequency or random, got " +
                absl::GetFlag(FLAGS_hot_promote));
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
      .hot_cache_bytes = hot_cache_mb < 0 ? -1 : hot_cache_mb << 20,
      .hot_promotion = *hot_promotion,
  });
  if (!group.ok()) return Fail(std::string(group.status().message()));
  if (absl::Status s = registry.StartReclaimer(absl::Seconds(1)); !s.ok()) {
    return Fail(std::string(s.message()));
  }

  const std::optional<RingKind> ring = ParseRingKind(absl::GetFlag(FLAGS_ring));
  if (!ring) return Fail("-ring must be groupcache or balanced, got " + absl::GetFlag(FLAGS_ring));
  const int eject_after = absl::GetFlag(FLAGS_eject_after);
  if (eject_after < 0 || (eject_after > 0 && (absl::GetFlag(FLAGS_eject_base_ms) <= 0 ||
                                              absl::GetFlag(FLAGS_eject_max_ms) <
                                                  absl::GetFlag(FLAGS_eject_base_ms)))) {
    return Fail("-eject-after must be >= 0; with it, -eject-base-ms > 0 and -eject-max-ms >= it");
  }
  const PeerClientOptions client{.timeout =
                                     absl::Milliseconds(absl::GetFlag(FLAGS_peer_timeout_ms))};
  std::shared_ptr<H2PeerClient> lean_client;
  if (transport == "lean") {
    absl::StatusOr<std::shared_ptr<H2PeerClient>> c = H2PeerClient::Create();
    if (!c.ok()) return Fail(std::string(c.status().message()));
    lean_client = *std::move(c);
  }
  RingPicker picker(
      addr,
      [client, lean_client](const std::string& peer) -> std::shared_ptr<PeerGetter> {
        return std::make_shared<LoggedPeer>(peer, lean_client ? lean_client->NewGetter(peer, client)
                                                              : NewGrpcPeerGetter(peer, client));
      },
      RingPickerOptions{
          .kind = *ring,
          .replicas = 0,
          .ejection = {.after_failures = eject_after,
                       .base_backoff = absl::Milliseconds(absl::GetFlag(FLAGS_eject_base_ms)),
                       .max_backoff = absl::Milliseconds(absl::GetFlag(FLAGS_eject_max_ms)),
                       .clock = nullptr,
                       .on_event = LogEjection},
      });
  if (!use_etcd) SetPeers(picker, SplitList(absl::GetFlag(FLAGS_peers)));
  (*group)->SetPeerPicker(&picker);

  // Readiness, for /readyz and the gRPC health service: false once draining
  // and, with -etcd, until discovery has registered this node and listed its
  // peers. It stays true while etcd is down later: the node keeps serving
  // with the last peers it knew, and taking every pod out of its Services
  // because etcd is away would turn an etcd outage into a cache outage.
  std::atomic<bool> draining{false};
  std::atomic<bool> discovered{!use_etcd};
  const std::function<bool()> ready = [&draining, &discovered] {
    return !draining.load(std::memory_order_relaxed) && discovered.load(std::memory_order_acquire);
  };

  const PeerServerOptions server_options{
      .address = addr,
      .registry = &registry,
      .max_key_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_key_bytes)),
      .load_threads = absl::GetFlag(FLAGS_load_threads),
      .max_queued_loads = absl::GetFlag(FLAGS_max_queued_loads),
      .serving = ready,
  };
  absl::StatusOr<std::unique_ptr<PeerServer>> server =
      transport == "lean" ? StartH2PeerServer(server_options, absl::GetFlag(FLAGS_io_threads))
                          : StartGrpcPeerServer(server_options);
  if (!server.ok())
    return Fail("cannot serve on " + addr + ": " + std::string(server.status().message()));
  spdlog::info(
      "lcache-node serving group {} on {} (port {}, {} transport), store {}, {} MiB, ring {}",
      (*group)->name(), addr, (*server)->port(), transport, StorePolicyName(*policy),
      absl::GetFlag(FLAGS_cache_mb), RingKindName(*ring));

  // Registered only once the listener is up, so that peers never route to a
  // node that cannot answer yet.
  std::unique_ptr<EtcdDiscovery> discovery;
  if (use_etcd) {
    absl::StatusOr<std::unique_ptr<EtcdDiscovery>> started = StartDiscovery(addr, picker);
    if (!started.ok()) {
      (*server)->Shutdown(absl::ZeroDuration());
      spdlog::error("{}", std::string(started.status().message()));
      return 1;
    }
    discovery = *std::move(started);
    discovered.store(true, std::memory_order_release);
  }

  std::unique_ptr<tools::AdminHttpServer> admin;
  if (const std::string http = absl::GetFlag(FLAGS_http); !http.empty()) {
    absl::StatusOr<std::unique_ptr<tools::AdminHttpServer>> started =
        tools::AdminHttpServer::Start({.address = http,
                                       .registry = &registry,
                                       .picker = &picker,
                                       .ready = ready,
                                       .max_inflight_loads = absl::GetFlag(FLAGS_load_threads)});
    if (!started.ok()) return Fail(std::string(started.status().message()));
    admin = *std::move(started);
    spdlog::info("admin HTTP on {} (port {})", http, admin->port());
  }

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
  spdlog::info("{}: draining (not ready; serving for {} ms, then grace {} ms)",
               signal == SIGINT ? "SIGINT" : "SIGTERM", absl::GetFlag(FLAGS_drain_delay_ms),
               absl::GetFlag(FLAGS_grace_ms));
  draining.store(true, std::memory_order_relaxed);  // /readyz 503, health NOT_SERVING
  if (discovery) discovery->Stop();                 // revoke the lease: peers stop sending us keys
  std::this_thread::sleep_for(std::chrono::milliseconds(absl::GetFlag(FLAGS_drain_delay_ms)));
  if (admin != nullptr) admin->StopAccepting();
  (*server)->Shutdown(absl::Milliseconds(absl::GetFlag(FLAGS_grace_ms)));
  if (admin != nullptr) admin->Stop();  // HTTP requests in flight, like getters, run to the end
  const EjectionStats ejection = picker.ejection_stats();
  spdlog::info("ejections {} returns {} probes {} skipped {}", ejection.ejections, ejection.returns,
               ejection.probes, ejection.skipped);
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
      "  lcache-node -addr 127.0.0.1:9001 -etcd 127.0.0.1:2379\n"
      "Flags take one dash or two; dashes and underscores in names are the same\n"
      "(-cache-mb = --cache_mb).",
      "lcache_node.cc");
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  return lcache::Run();
}
