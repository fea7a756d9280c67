// EtcdDiscovery: membership through etcd's v3 API, as the Go lru_cache does it.
//
// A node registers the key `<service>/<self>` with the value `<self>` under a
// lease (TTL `lease_ttl`) that it keeps alive over etcd's LeaseKeepAlive
// stream, and watches the prefix `<service>/`: every change hands the full
// peer set (the keys with the prefix removed, in key order, as a listing
// returns them) to the callback, which typically passes it to
// RingPicker::SetPeers.
//
//   lcache::EtcdOptions options{.endpoints = {"127.0.0.1:2379"}};
//   auto discovery = lcache::EtcdDiscovery::Start(options, "10.0.0.7:9000",
//       [&](const std::vector<std::string>& peers) { picker.SetPeers(peers); });
//   ...
//   (*discovery)->Stop();  // revoke the lease first: peers drop us at once
//
// Guarantees:
// - No change is lost between the listing and the watch: the watch starts at
//   the listing's revision + 1. Every event is applied in order, so after the
//   last change the callback's view equals etcd's (bursts may be coalesced
//   into one call, never dropped). If the watch breaks (etcd down, the start
//   revision compacted), the last peer set stays in force while the watcher
//   reconnects with backoff, re-lists and re-watches.
// - The registration heals itself: if the lease is lost (keep-alive answered
//   with TTL 0, as after etcd lost its data; or no keep-alive got through for
//   a whole TTL), a new lease is granted and the key put again, with backoff.
// - Several endpoints: a call that cannot reach one endpoint moves to the next.
// - Optional authentication (user/password: etcd's Authenticate token rides
//   as metadata on every call, renewed when etcd rejects it) and TLS.
//
// Thread-safety: the callback runs on the watcher thread, one call at a time.
// Stop() and the destructor must not be called from the callback.

#ifndef LCACHE_ETCD_DISCOVERY_H_
#define LCACHE_ETCD_DISCOVERY_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lcache {

struct EtcdOptions {
  // host:port of each etcd member; calls fail over between them.
  std::vector<std::string> endpoints;
  // The key prefix: this node registers `<service>/<self>`.
  std::string service = "lcache";
  // Lease TTL; etcd rounds it up to its minimum (about 2 s by default).
  absl::Duration lease_ttl = absl::Seconds(10);
  // Deadline of each unary call (grant, put, range, revoke, authenticate).
  absl::Duration call_timeout = absl::Seconds(2);
  // Start fails if etcd cannot be reached (register and list) within this.
  absl::Duration start_timeout = absl::Seconds(10);
  // Authentication: both empty for none.
  std::string user = "";
  std::string password = "";
  // TLS: a CA file turns TLS on; cert and key files add a client certificate.
  std::string ca_file = "";
  std::string cert_file = "";
  std::string key_file = "";
};

class EtcdDiscovery {
 public:
  using PeersCallback = std::function<void(const std::vector<std::string>& peers)>;

  // Registers `self` (unless empty: then it only watches), lists the peers
  // and calls `on_peers` once with them, and starts keeping the lease alive
  // and watching. Returns an error if the options are invalid or etcd cannot
  // be reached within options.start_timeout; nothing keeps running then.
  // `before_rejoin`, if set, runs on the keeper thread each time the lease
  // was lost and the node is about to register again (not at the first
  // registration): the others dropped the node meanwhile and changed its
  // keys without telling it, so a node drops its copies there.
  static absl::StatusOr<std::unique_ptr<EtcdDiscovery>> Start(
      EtcdOptions options, std::string self, PeersCallback on_peers,
      std::function<void()> before_rejoin = nullptr);

  // Stop()s.
  ~EtcdDiscovery();

  EtcdDiscovery(const EtcdDiscovery&) = delete;
  EtcdDiscovery& operator=(const EtcdDiscovery&) = delete;

  // Revokes the lease (so the other nodes drop this one at once, within one
  // call_timeout at most) and stops the watcher. Idempotent.
  void Stop();

  // Whether etcd said this node's lease is gone (it expired: a partition
  // from etcd, a pause longer than the TTL) and the node has not registered
  // again yet. The others dropped the node from their rings meanwhile and
  // no longer told it of Sets and Removes. While etcd is merely unreachable
  // this stays false: the node cannot tell a partition from an etcd outage,
  // and keeps serving from its last view. Any thread; cheap.
  bool LeaseLost() const;

  // Whether etcd confirmed, less than the lease's TTL ago (counted from
  // when the renewal was sent), that the lease lives: if so, the others
  // cannot have dropped this node yet. False while etcd is unreachable for
  // longer than the TTL, whether this node is cut off or etcd is down for
  // everyone. Always true for a watcher (empty `self`). Any thread; cheap
  // (one clock read).
  bool LeaseConfirmed() const;

  class Impl;

 private:
  explicit EtcdDiscovery(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lcache

#endif  // LCACHE_ETCD_DISCOVERY_H_
