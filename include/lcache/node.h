// Node: one cache node, the composition that lcache-node runs, as an object
// a program or a test can start and stop in-process.
//
// A node owns a GroupRegistry with its groups, the RingPicker that routes
// their misses to the owner peer, the clients of the peer transport, the
// peer server (lean or gRPC C++), discovery (a static peer list, or etcd),
// and optionally the HTTP admin listener (/metrics, /readyz, /peers,
// /groups/G/K). The path of a Get through it: docs/ARCHITECTURE.md.
//
//   auto node = lcache::Node::Start({
//       .address = "127.0.0.1:9001",
//       .groups = {{.name = "scores", .cache_bytes = 64 << 20, .getter = Load}},
//       .peers = {"127.0.0.1:9001", "127.0.0.1:9002"},
//   });
//   absl::StatusOr<lcache::ByteView> v = (*node)->group("scores")->Get("Tom");
//   (*node)->Stop();  // drain: not ready, leave etcd, finish calls in flight
//
// Start order: groups, then the peer server, then discovery (registered only
// once the listener is up, so peers never route to a node that cannot answer
// yet), then the admin listener.
//
// Readiness (ready(), /readyz, gRPC health): false once draining and, with
// etcd, until discovery has registered this node and listed its peers. It
// stays true while etcd is down later: the node keeps serving with the last
// peers it knew, and taking every pod out of its Services because etcd is
// away would turn an etcd outage into a cache outage.
//
// Thread-safety: all methods may be called from any thread; Stop and the
// destructor from one thread at a time.

#ifndef LCACHE_NODE_H_
#define LCACHE_NODE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/etcd_discovery.h"
#include "lcache/group.h"
#include "lcache/peer_server.h"
#include "lcache/ring_picker.h"

namespace lcache {

// The peer protocol's transport: the same wire either way (peer_server.h).
enum class PeerTransport {
  kLean,  // nghttp2 + libevent (h2_peer.h): a fraction of gRPC C++'s CPU per call
  kGrpc,  // gRPC C++ (grpc_peer.h)
};

// "lean" / "grpc"; nullopt for anything else.
std::optional<PeerTransport> ParsePeerTransport(std::string_view name);
std::string_view PeerTransportName(PeerTransport transport);

struct NodeOptions {
  // host:port to listen on for the peer protocol, and this node's identity on
  // the ring: peers must list it (or register it in etcd) exactly so. Port
  // 0 listens on a free port (port()), but the ring still knows the node by
  // this string: only for a node without peers.
  std::string address = "127.0.0.1:9000";
  // host:port the peer server binds, when it differs from `address`: e.g.
  // 0.0.0.0:9001 in a pod that registers its own IP as `address`. Empty:
  // `address`. Peers still reach the node only at `address`.
  std::string listen_address = "";
  // The groups the node serves; each routes its misses through the node's
  // ring (GroupOptions::peers is set by the node). At least one.
  std::vector<GroupOptions> groups = {};

  // Static peers, this node included; empty: a node alone (or etcd's).
  std::vector<std::string> peers = {};
  // Discovery through etcd instead of `peers` (not both).
  std::optional<EtcdOptions> etcd = std::nullopt;
  // With etcd, what the node does while no renewal of its lease has been
  // confirmed for a whole TTL. It cannot tell whether it is cut off from
  // etcd (the others drop it and change its keys without telling it) or
  // etcd is down for everyone (nobody is dropped). kServe keeps serving
  // from its last view: available, but the cut-off node may serve values
  // the others changed meanwhile. kRefuse answers data requests
  // UNAVAILABLE (and reports not ready) until etcd confirms the lease
  // again: no stale reads from it, but an etcd outage longer than the TTL
  // stops every node. Either way, a node whose lease expired drops all its
  // copies before it registers again.
  enum class LeaseLapse { kServe, kRefuse };
  LeaseLapse lease_lapse = LeaseLapse::kServe;

  // How keys map to peers, and when an unreachable peer is ejected (off by
  // default, as in RingPickerOptions; lcache-node turns it on with
  // -eject-after 3). A null ejection.on_event logs ejections and returns.
  RingPickerOptions ring = {};
  PeerTransport transport = PeerTransport::kLean;
  int io_threads = 1;  // lean transport: event-loop threads, shared by the server and the peer client
  // Deadline of each call to a peer.
  absl::Duration peer_timeout = absl::Seconds(2);
  // TLS for the peer port and for calls to peers (TlsOptions, peer_server.h):
  // every node of a cluster needs it then (Go nodes speak plaintext only).
  std::optional<TlsOptions> tls = std::nullopt;
  // The peer server's limits (PeerServerOptions).
  size_t max_key_bytes = 4096;
  int load_threads = 8;
  int max_queued_loads = 1024;
  PeerServerLimits server_limits = {};

  // The HTTP admin listener's host:port; empty: none.
  std::string http_address = "";
  // Non-empty: every admin path but /healthz and /readyz needs
  // "Authorization: Bearer <http_token>".
  std::string http_token = "";
  // Admin connections served at once (a thread each); more wait.
  int http_max_connections = 64;
  // HTTPS on the admin listener, with `tls`'s certificate and key (which it
  // needs): kTls serves HTTPS to anyone; kMutual also asks clients for a
  // certificate, and one that tls->ca_file signed opens every path but the
  // probes, as `http_token` does (either will do; the probes stay open to
  // all, as a kubelet's HTTPS probe shows no certificate).
  enum class HttpTls { kNone, kTls, kMutual };
  HttpTls http_tls = HttpTls::kNone;
  // How often expired entries nobody reads are swept
  // (GroupRegistry::StartReclaimer); zero: never.
  absl::Duration reclaim_interval = absl::Seconds(1);

  // Stop(): how long to keep serving while reporting not ready (so load
  // balancers and probes notice), then how long calls in flight may take.
  absl::Duration drain_delay = absl::ZeroDuration();
  absl::Duration grace = absl::Seconds(5);
  // Stop(), right after leaving the ring: each group hands up to this many
  // bytes of its most valuable entries to the nodes that now own them
  // (Group::HandOff), within `grace` and kMaxHandoffTime (5 s); 0: none.
  int64_t handoff_bytes = int64_t{64} << 20;
};

class Node {
 public:
  // Builds and starts everything, in the order above. Errors:
  // InvalidArgument for options that cannot work (a bad group, two groups of
  // one name, peers with etcd, a malformed admin address, bad etcd options),
  // with what was wrong; Unavailable, with the address, when the node cannot
  // listen or etcd cannot be reached. Nothing keeps running after an error.
  static absl::StatusOr<std::unique_ptr<Node>> Start(NodeOptions options);

  // Stop()s.
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Drains and stops: reports not ready, revokes the etcd registration
  // (peers stop sending keys at once), hands its most valuable entries off
  // (handoff_bytes), keeps serving for drain_delay, stops
  // accepting, lets calls in flight finish within grace, then stops the
  // admin listener (its requests in flight run to the end). Idempotent.
  void Stop();

  // Reads the TLS files again now (lcache-node does on SIGHUP), for the peer
  // port, the calls to peers and the admin listener; on an error the
  // previous ones stay in use. The peer port and calls of the gRPC transport
  // answer Unimplemented (gRPC looks at the files every second by itself,
  // and has no reload on demand). OK without TLS.
  absl::Status ReloadTls();

  // Replaces the static peer set (this node included) and logs the change;
  // FailedPrecondition with etcd, whose watch owns the set.
  absl::StatusOr<RingPicker::Change> SetPeers(std::vector<std::string> peers);

  const std::string& address() const;
  // The port the peer server listens on (the address's, or the one picked for :0).
  int port() const;
  // The admin listener's port; 0 without one.
  int http_port() const;
  bool ready() const;

  // The group of that name, or null. Groups live as long as the node.
  Group* group(std::string_view name) const;
  // The node's groups, all of them routed through its ring. Read-only: a
  // group made after Start would have no ring; give it in NodeOptions.
  const GroupRegistry& registry() const;
  const RingPicker& picker() const;

 private:
  class Impl;
  explicit Node(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lcache

#endif  // LCACHE_NODE_H_
