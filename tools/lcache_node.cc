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

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "go_flags.h"
#include "lcache/grpc_wire.h"
#include "lcache/log_key.h"
#include "lcache/node.h"
#include "lcache/origin.h"
#include "node_source.h"
#include "spdlog/spdlog.h"

// The Go program's flags, with its defaults.
ABSL_FLAG(std::string, addr, "127.0.0.1:9000",
          "gRPC listen address, also this node's identity on the ring");
ABSL_FLAG(std::string, listen, "",
          "host:port to listen on when it differs from -addr (e.g. 0.0.0.0:9001 while -addr is "
          "the pod's IP); empty: -addr");
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
          "which fetched values the hot cache keeps: frequency (keys fetched twice recently, or "
          "any while it is under 7/8 full) or random (1 in 10, groupcache's rule)");
ABSL_FLAG(int64_t, peer_timeout_ms, 2000, "deadline of each call to a peer");
ABSL_FLAG(std::string, hot_max_age, "60s",
          "longest life of a copy of a key another node owns (hot copy, or a value loaded here "
          "because its owner failed): the staleness bound of a node an invalidation missed. A "
          "duration (500ms, 60s, 5m), a bare number of milliseconds, or inf for no bound");
ABSL_FLAG(std::string, warmup, "120s",
          "after a ring change, how long a node that took keys over first peeks at their previous "
          "owner's copy before it loads (a duration or milliseconds; 0 = never)");
ABSL_FLAG(int64_t, handoff_mb, 64,
          "on SIGTERM, before leaving the ring, push up to this many MiB of the most valuable "
          "entries to the nodes that will own them, within -grace-ms (0 = no hand-off)");
ABSL_FLAG(int32_t, replicas, 1,
          "nodes that hold each key: its owner and replicas - 1 replica holders, which answer "
          "for it when the owner fails or is gone (1 = no replicas; C++ nodes only take them)");
ABSL_FLAG(int64_t, replica_mb, -1,
          "replica store size in MiB, in addition to -cache-mb (-1: (replicas - 1) x -cache-mb)");
ABSL_FLAG(std::string, source, "demo",
          "the group's data: demo (Tom/Jack/Sam), synthetic:BYTES[:DELAY_MS], dir:PATH, an HTTP "
          "origin (http://host:port/path/{key}, or https) or PostgreSQL "
          "(postgres://user@host:port/db with -source-query)");
ABSL_FLAG(std::string, log_loads, "sampled",
          "demo/synthetic/dir source: log each load (all), the first 10 a second and a count "
          "of the rest (sampled), or none");
ABSL_FLAG(std::string, source_query, "",
          "postgres source: the query, with the key as $1 and one column, e.g. "
          "'SELECT v FROM t WHERE k = $1'");
ABSL_FLAG(std::string, source_password_file, "",
          "postgres source: a file whose first line is the password (else PGPASSWORD or "
          "~/.pgpass; never in the URL)");
ABSL_FLAG(int64_t, origin_timeout_ms, 1500,
          "http/postgres source: the longest a load may take (keep it under -peer-timeout-ms, or "
          "a forwarded Get gives up on the owner first and loads again)");
ABSL_FLAG(int64_t, origin_max_bytes, 16 << 20, "http/postgres source: the largest value taken");
ABSL_FLAG(int32_t, origin_connections, 8,
          "http/postgres source: connections kept open (postgres: at most this many)");
ABSL_FLAG(std::string, origin_ca, "", "https source: a CA bundle to trust instead of the system's");
ABSL_FLAG(int64_t, max_key_bytes, 4096, "longer keys are rejected");
ABSL_FLAG(int32_t, load_threads, 8, "threads that run loads (misses)");
ABSL_FLAG(int32_t, max_queued_loads, 1024, "loads queued beyond this get RESOURCE_EXHAUSTED");
ABSL_FLAG(int32_t, max_connections, 4096,
          "peer/client port: connections beyond this are closed at accept");
ABSL_FLAG(std::string, idle_timeout, "30s",
          "peer/client port: a connection with no request that has read nothing for this long "
          "is closed");
ABSL_FLAG(std::string, request_timeout, "10s",
          "peer/client port: a request (headers and body) not complete by then is reset, and a "
          "connection without its HTTP/2 preface closed");
ABSL_FLAG(int64_t, max_conn_buffer_kb, 4096,
          "peer/client port: request bytes one connection may have buffered, in KiB");
ABSL_FLAG(int64_t, max_buffer_mb, 32,
          "peer/client port: request bytes all connections may have buffered, in MiB");
ABSL_FLAG(std::string, tls_cert, "",
          "TLS: this node's certificate chain (PEM): the peer port serves TLS only, and calls to "
          "peers use TLS (with -tls-key; reloaded when the files change, and on SIGHUP)");
ABSL_FLAG(std::string, tls_key, "", "TLS: the certificate's private key (PEM)");
ABSL_FLAG(std::string, tls_ca, "",
          "TLS: the CA (PEM) that signs the cluster's certificates: peers are verified against it "
          "(default: the system's CAs)");
ABSL_FLAG(std::string, tls_client_auth, "",
          "TLS: none, request or require a client certificate signed by -tls-ca (default: "
          "request with -tls-ca, else none). Only clients with one may mark requests forwarded");
ABSL_FLAG(std::string, http_token_file, "",
          "admin HTTP: a file holding a token that every path but /healthz and /readyz needs "
          "(Authorization: Bearer TOKEN)");
ABSL_FLAG(std::string, http_tls, "none",
          "admin HTTP: none (plain HTTP), tls (HTTPS with -tls-cert and -tls-key), or mtls "
          "(HTTPS; a client certificate signed by -tls-ca opens every path but /healthz and "
          "/readyz, as the token does)");
ABSL_FLAG(int32_t, http_max_connections, 64,
          "admin HTTP: connections served at once (a thread each); more wait");
ABSL_FLAG(int64_t, grace_ms, 5000, "on SIGTERM, how long calls in flight may take to finish");
ABSL_FLAG(std::string, transport, "lean",
          "the peer protocol's server and client: lean (nghttp2 + libevent) or grpc (gRPC C++); "
          "the same wire");
ABSL_FLAG(int32_t, io_threads, 1, "lean transport: event-loop threads");
ABSL_FLAG(int64_t, etcd_lease_ttl_s, 10, "TTL of this node's registration in etcd, in seconds");
ABSL_FLAG(std::string, etcd_lapse, "serve",
          "while etcd has confirmed no renewal of this node's lease for a whole TTL: serve (keep "
          "serving from the last view; if this node alone is cut off from etcd, the others drop "
          "it and it may serve values they changed) or refuse (answer UNAVAILABLE and report not "
          "ready until etcd confirms the lease: no stale reads, but an etcd outage longer than "
          "the TTL stops every node)");
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
// 2 s: a peer back from a partition or a pause is used again within it (the
// probe connects anew, see h2_client.cc "Liveness"); the price is one
// request per 2 s that waits for a dead peer before its fallback.
ABSL_FLAG(int64_t, eject_max_ms, 2000, "longest ejection");
ABSL_FLAG(bool, eject_slow, true,
          "with -eject-after: a peer whose link is slow (lean transport: PING round trips far "
          "above their usual) is ejected too, its answers counted as failures");
// Operations: the admin listener and the drain before stopping.
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

// A duration flag: "60s", "500ms", "5m", "inf", or a bare number of
// milliseconds; nullopt when it is none of these.
std::optional<absl::Duration> DurationFlag(const std::string& text) {
  absl::Duration d;
  if (int64_t ms = 0; absl::SimpleAtoi(text, &ms)) return absl::Milliseconds(ms);
  if (absl::ParseDuration(text, &d)) return d;
  return std::nullopt;
}

// TlsOptions from the -tls-* flags; nullopt without -tls-cert.
absl::StatusOr<std::optional<TlsOptions>> TlsFromFlags() {
  TlsOptions tls{.cert_file = absl::GetFlag(FLAGS_tls_cert),
                 .key_file = absl::GetFlag(FLAGS_tls_key),
                 .ca_file = absl::GetFlag(FLAGS_tls_ca)};
  const std::string auth = absl::GetFlag(FLAGS_tls_client_auth);
  if (tls.cert_file.empty() && tls.key_file.empty()) {
    if (!tls.ca_file.empty() || !auth.empty()) {
      return absl::InvalidArgumentError("-tls-ca and -tls-client-auth need -tls-cert and -tls-key");
    }
    return std::nullopt;
  }
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return absl::InvalidArgumentError("-tls-cert and -tls-key go together");
  }
  if (auth.empty()) {
    tls.client_auth = tls.ca_file.empty() ? TlsOptions::ClientAuth::kNone
                                          : TlsOptions::ClientAuth::kRequest;
  } else if (auth == "none") {
    tls.client_auth = TlsOptions::ClientAuth::kNone;
  } else if (auth == "request") {
    tls.client_auth = TlsOptions::ClientAuth::kRequest;
  } else if (auth == "require") {
    tls.client_auth = TlsOptions::ClientAuth::kRequire;
  } else {
    return absl::InvalidArgumentError("-tls-client-auth must be none, request or require, got \"" +
                                      auth + "\"");
  }
  return tls;
}

// The admin token: the file's first line, surrounding whitespace trimmed.
// An empty or unreadable file is an error, not "no token".
absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  if (!file || !std::getline(file, line)) {
    return absl::InvalidArgumentError("-http-token-file: cannot read \"" + path + "\"");
  }
  const absl::string_view token = absl::StripAsciiWhitespace(line);
  if (token.size() < 16) {
    return absl::InvalidArgumentError("-http-token-file: the token in \"" + path +
                                      "\" is shorter than 16 characters");
  }
  return std::string(token);
}

// Every connection is a descriptor, and the usual soft limit (1024) is far
// below -max-connections: raise it to the hard limit, as Go programs do.
void RaiseDescriptorLimit() {
  rlimit limit = {};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
}

// SIGINT and SIGTERM: the signals that stop the node; SIGHUP: read the TLS
// files again.
sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

// NodeOptions from the flags; a usage error names the flag.
absl::StatusOr<NodeOptions> OptionsFromFlags() {
  const auto usage = [](const std::string& message) { return absl::InvalidArgumentError(message); };
  NodeOptions options;
  options.address = absl::GetFlag(FLAGS_addr);
  if (const auto split = wire::SplitHostPort(options.address); !split || split->port.empty()) {
    return usage("-addr must be host:port (e.g. 127.0.0.1:9001), got \"" + options.address + "\"");
  }
  options.listen_address = absl::GetFlag(FLAGS_listen);
  if (const auto split = wire::SplitHostPort(options.listen_address);
      !options.listen_address.empty() && (!split || split->port.empty())) {
    return usage("-listen must be host:port (e.g. 0.0.0.0:9001), got \"" +
                 options.listen_address + "\"");
  }
  const bool use_etcd = !absl::GetFlag(FLAGS_etcd).empty();
  if (use_etcd && !absl::GetFlag(FLAGS_peers).empty()) {
    return usage("-peers and -etcd exclude each other: give the static peer list or etcd");
  }
  if (absl::GetFlag(FLAGS_etcd_lease_ttl_s) <= 0 ||
      absl::GetFlag(FLAGS_etcd_start_timeout_ms) <= 0) {
    return usage("-etcd-lease-ttl-s and -etcd-start-timeout-ms must be > 0");
  }
  const std::string lapse = absl::GetFlag(FLAGS_etcd_lapse);
  if (lapse != "serve" && lapse != "refuse") {
    return usage("-etcd-lapse must be serve or refuse, got \"" + lapse + "\"");
  }
  const std::optional<PeerTransport> transport = ParsePeerTransport(absl::GetFlag(FLAGS_transport));
  if (!transport)
    return usage("-transport must be grpc or lean, got " + absl::GetFlag(FLAGS_transport));
  const std::optional<StorePolicy> policy = ParseStorePolicy(absl::GetFlag(FLAGS_store));
  if (!policy)
    return usage("-store must be lru, lru2 or tinylfu, got " + absl::GetFlag(FLAGS_store));
  if (absl::GetFlag(FLAGS_cache_mb) < 0 || absl::GetFlag(FLAGS_expire_ms) < 0 ||
      absl::GetFlag(FLAGS_peer_timeout_ms) <= 0 || absl::GetFlag(FLAGS_max_key_bytes) <= 0) {
    return usage("-cache-mb and -expire-ms must be >= 0, -peer-timeout-ms and -max-key-bytes > 0");
  }
  if (absl::GetFlag(FLAGS_grace_ms) < 0 || absl::GetFlag(FLAGS_drain_delay_ms) < 0) {
    return usage("-grace-ms and -drain-delay-ms must be >= 0");
  }
  const int64_t hot_cache_mb = absl::GetFlag(FLAGS_hot_cache_mb);
  if (hot_cache_mb < -1) return usage("-hot-cache-mb must be >= 0 (or -1: -cache-mb / 8)");
  const std::optional<HotPromotion> hot_promotion =
      ParseHotPromotion(absl::GetFlag(FLAGS_hot_promote));
  if (!hot_promotion) {
    return usage("-hot-promote must be frequency or random, got " +
                 absl::GetFlag(FLAGS_hot_promote));
  }
  std::optional<absl::Duration> hot_max_age = DurationFlag(absl::GetFlag(FLAGS_hot_max_age));
  if (!hot_max_age) {
    return usage("-hot-max-age must be a duration such as 60s or 500ms, got \"" +
                 absl::GetFlag(FLAGS_hot_max_age) + "\"");
  }
  if (*hot_max_age <= absl::ZeroDuration()) {
    return usage("-hot-max-age must be > 0 (inf for no bound), got " +
                 absl::GetFlag(FLAGS_hot_max_age));
  }
  Getter getter;
  std::shared_ptr<Origin> origin;
  if (const std::string source = absl::GetFlag(FLAGS_source); tools::IsOriginSpec(source)) {
    if (absl::GetFlag(FLAGS_origin_timeout_ms) <= 0 || absl::GetFlag(FLAGS_origin_max_bytes) <= 0 ||
        absl::GetFlag(FLAGS_origin_connections) <= 0) {
      return usage("-origin-timeout-ms, -origin-max-bytes and -origin-connections must be > 0");
    }
    absl::StatusOr<std::shared_ptr<Origin>> made = tools::MakeOrigin(
        source, {.timeout = absl::Milliseconds(absl::GetFlag(FLAGS_origin_timeout_ms)),
                 .max_value_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_origin_max_bytes)),
                 .connections = absl::GetFlag(FLAGS_origin_connections),
                 .query = absl::GetFlag(FLAGS_source_query),
                 .password_file = absl::GetFlag(FLAGS_source_password_file),
                 .ca_file = absl::GetFlag(FLAGS_origin_ca)});
    if (!made.ok()) return made.status();
    origin = *std::move(made);
  } else {
    if (!absl::GetFlag(FLAGS_source_query).empty()) {
      return usage("-source-query is for a postgres:// source only");
    }
    absl::StatusOr<tools::LoadLogging> logging =
        tools::ParseLoadLogging(absl::GetFlag(FLAGS_log_loads));
    if (!logging.ok()) return logging.status();
    absl::StatusOr<Getter> made = tools::MakeSource(source, *logging);
    if (!made.ok()) return made.status();
    getter = *std::move(made);
  }
  options.groups.push_back({
      .name = absl::GetFlag(FLAGS_group),
      .cache_bytes = absl::GetFlag(FLAGS_cache_mb) << 20,
      .getter = std::move(getter),
      .origin = std::move(origin),
      .policy = *policy,
      .default_ttl = absl::Milliseconds(absl::GetFlag(FLAGS_expire_ms)),
      .max_key_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_key_bytes)),
      .hot_cache_bytes = hot_cache_mb < 0 ? -1 : hot_cache_mb << 20,
      .hot_promotion = *hot_promotion,
      .hot_max_age = *hot_max_age,
  });
  const int replicas = absl::GetFlag(FLAGS_replicas);
  if (replicas < 1 || replicas > 16) {
    return usage("-replicas must be in [1, 16], got " + std::to_string(replicas));
  }
  const int64_t replica_mb = absl::GetFlag(FLAGS_replica_mb);
  if (replica_mb < -1 || replica_mb > (int64_t{1} << 30)) {
    return usage("-replica-mb must be -1 (derived) or in [0, 2^30], got " +
                 std::to_string(replica_mb));
  }
  if (replicas > 1) {
    if (replica_mb == 0) {
      return usage("-replicas " + std::to_string(replicas) +
                   " needs a replica store: -replica-mb must not be 0");
    }
    if (replica_mb < 0 && absl::GetFlag(FLAGS_cache_mb) == 0) {
      return usage("-replicas with an unbounded cache (-cache-mb 0) needs -replica-mb");
    }
    options.groups.back().replica_cache_bytes = replica_mb < 0 ? 0 : replica_mb << 20;
  }
  const std::optional<absl::Duration> warmup = DurationFlag(absl::GetFlag(FLAGS_warmup));
  if (!warmup || *warmup < absl::ZeroDuration()) {
    return usage("-warmup must be a duration >= 0 such as 120s, got \"" +
                 absl::GetFlag(FLAGS_warmup) + "\"");
  }
  if (absl::GetFlag(FLAGS_handoff_mb) < 0 || absl::GetFlag(FLAGS_handoff_mb) > (1 << 20)) {
    return usage("-handoff-mb must be in [0, 1048576], got " +
                 std::to_string(absl::GetFlag(FLAGS_handoff_mb)));
  }
  options.handoff_bytes = absl::GetFlag(FLAGS_handoff_mb) << 20;

  const std::optional<RingKind> ring = ParseRingKind(absl::GetFlag(FLAGS_ring));
  if (!ring) return usage("-ring must be groupcache or balanced, got " + absl::GetFlag(FLAGS_ring));
  const int eject_after = absl::GetFlag(FLAGS_eject_after);
  if (eject_after < 0 || (eject_after > 0 && (absl::GetFlag(FLAGS_eject_base_ms) <= 0 ||
                                              absl::GetFlag(FLAGS_eject_max_ms) <
                                                  absl::GetFlag(FLAGS_eject_base_ms)))) {
    return usage("-eject-after must be >= 0; with it, -eject-base-ms > 0 and -eject-max-ms >= it");
  }
  options.ring = {
      .kind = *ring,
      .replicas = 0,
      .ejection = {.after_failures = eject_after,
                   .base_backoff = absl::Milliseconds(absl::GetFlag(FLAGS_eject_base_ms)),
                   .max_backoff = absl::Milliseconds(absl::GetFlag(FLAGS_eject_max_ms)),
                   .slow_links = absl::GetFlag(FLAGS_eject_slow)},
      .warmup = *warmup,
      .replication = replicas,
  };
  if (use_etcd) {
    options.etcd = EtcdOptions{
        .endpoints = SplitList(absl::GetFlag(FLAGS_etcd)),
        .service = absl::GetFlag(FLAGS_svc),
        .lease_ttl = absl::Seconds(absl::GetFlag(FLAGS_etcd_lease_ttl_s)),
        .start_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_etcd_start_timeout_ms)),
        .user = absl::GetFlag(FLAGS_etcd_user),
        .password = absl::GetFlag(FLAGS_etcd_password),
        .ca_file = absl::GetFlag(FLAGS_etcd_ca),
        .cert_file = absl::GetFlag(FLAGS_etcd_cert),
        .key_file = absl::GetFlag(FLAGS_etcd_key),
    };
    options.lease_lapse =
        lapse == "refuse" ? NodeOptions::LeaseLapse::kRefuse : NodeOptions::LeaseLapse::kServe;
  } else {
    options.peers = SplitList(absl::GetFlag(FLAGS_peers));
  }
  options.transport = *transport;
  options.io_threads = absl::GetFlag(FLAGS_io_threads);
  options.peer_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_peer_timeout_ms));
  options.max_key_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_key_bytes));
  options.load_threads = absl::GetFlag(FLAGS_load_threads);
  options.max_queued_loads = absl::GetFlag(FLAGS_max_queued_loads);
  std::optional<absl::Duration> idle_timeout = DurationFlag(absl::GetFlag(FLAGS_idle_timeout));
  std::optional<absl::Duration> request_timeout =
      DurationFlag(absl::GetFlag(FLAGS_request_timeout));
  if (!idle_timeout || !request_timeout || *idle_timeout <= absl::ZeroDuration() ||
      *request_timeout <= absl::ZeroDuration()) {
    return usage(
        "-idle-timeout and -request-timeout must be positive durations such as 30s or 500ms");
  }
  options.server_limits = {
      .max_connections = absl::GetFlag(FLAGS_max_connections),
      .idle_timeout = *idle_timeout,
      .request_timeout = *request_timeout,
      .max_connection_buffer_bytes =
          static_cast<size_t>(std::max<int64_t>(absl::GetFlag(FLAGS_max_conn_buffer_kb), 0)) << 10,
      .max_buffer_bytes =
          static_cast<size_t>(std::max<int64_t>(absl::GetFlag(FLAGS_max_buffer_mb), 0)) << 20,
  };
  if (absl::StatusOr<std::optional<TlsOptions>> tls = TlsFromFlags(); !tls.ok()) {
    return tls.status();
  } else {
    options.tls = *std::move(tls);
  }
  options.http_address = absl::GetFlag(FLAGS_http);
  if (const std::string path = absl::GetFlag(FLAGS_http_token_file); !path.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(path);
    if (!token.ok()) return token.status();
    options.http_token = *std::move(token);
  }
  if (const std::string mode = absl::GetFlag(FLAGS_http_tls); mode == "tls") {
    options.http_tls = NodeOptions::HttpTls::kTls;
  } else if (mode == "mtls") {
    options.http_tls = NodeOptions::HttpTls::kMutual;
  } else if (mode != "none") {
    return usage("-http-tls must be none, tls or mtls, got \"" + mode + "\"");
  }
  if (options.http_tls != NodeOptions::HttpTls::kNone && !options.tls) {
    return usage("-http-tls " + absl::GetFlag(FLAGS_http_tls) + " needs -tls-cert and -tls-key");
  }
  if (options.http_tls == NodeOptions::HttpTls::kMutual && options.tls->ca_file.empty()) {
    return usage("-http-tls mtls needs -tls-ca (the CA that signs the clients' certificates)");
  }
  options.http_max_connections = absl::GetFlag(FLAGS_http_max_connections);
  if (options.http_max_connections < 1) return usage("-http-max-connections must be >= 1");
  options.drain_delay = absl::Milliseconds(absl::GetFlag(FLAGS_drain_delay_ms));
  options.grace = absl::Milliseconds(absl::GetFlag(FLAGS_grace_ms));
  return options;
}

// Exit codes: 0 after a stop signal; 2 for flags that cannot work; 1 when
// the node cannot start (the address cannot be bound, etcd is unreachable).
int Run() {
  absl::StatusOr<NodeOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    spdlog::error("{}", std::string(options.status().message()));
    return 2;
  }
  if (const std::shared_ptr<Origin>& origin = options->groups[0].origin; origin != nullptr) {
    // A query the database refuses can never work; a database that is down
    // now may come back, and the node serves what its peers hold meanwhile.
    if (absl::Status s = origin->Check(); absl::IsInvalidArgument(s)) {
      spdlog::error("{}", std::string(s.message()));
      return 2;
    } else if (!s.ok()) {
      spdlog::warn("origin {} {} not reachable at start (loads retry): {}", origin->kind(),
                   origin->endpoint(), std::string(s.message()));
    } else {
      spdlog::info("origin {} {}", origin->kind(), origin->endpoint());
    }
  }
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(*std::move(options));
  if (!node.ok()) {
    spdlog::error("{}", std::string(node.status().message()));
    return absl::IsInvalidArgument(node.status()) ? 2 : 1;
  }

  if (const std::string key = absl::GetFlag(FLAGS_get); !key.empty()) {
    absl::StatusOr<ByteView> v = (*node)->group(absl::GetFlag(FLAGS_group))->Get(key);
    if (v.ok()) {
      spdlog::info("get {} = {}", LogKey(key), LogKey(v->view(), 1024));
    } else {
      spdlog::info("get {} failed: {}", LogKey(key), v.status().ToString());
    }
  }

  // The signals were blocked in main() before any thread started, so only
  // this thread receives them.
  const sigset_t stop_signals = StopSignals();
  int signal = 0;
  while (sigwait(&stop_signals, &signal) == 0 && signal == SIGHUP) {
    if (absl::Status s = (*node)->ReloadTls(); s.ok()) {
      spdlog::info("SIGHUP: TLS files read again");
    } else if (absl::IsUnimplemented(s)) {
      spdlog::info("SIGHUP: {}", std::string(s.message()));
    } else {
      spdlog::error("SIGHUP: {}; still using the previous files", std::string(s.message()));
    }
  }
  spdlog::info(
      "{}: draining (not ready; leaving the ring, handing off up to {} MiB, serving for {} ms, "
      "then grace {} ms)",
      signal == SIGINT ? "SIGINT" : "SIGTERM", absl::GetFlag(FLAGS_handoff_mb),
      absl::GetFlag(FLAGS_drain_delay_ms), absl::GetFlag(FLAGS_grace_ms));
  (*node)->Stop();
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
  lcache::RaiseDescriptorLimit();
  return lcache::Run();
}
