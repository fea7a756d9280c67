// The node's HTTP admin listener (lcache-node -http ADDR), on cpp-httplib.
//
//   GET /metrics              Prometheus text format 0.0.4: per-group counters,
//                             gauges and latency histograms (RenderMetrics)
//   GET /healthz              200 while the process serves HTTP at all
//   GET /readyz               200 when `ready` says so, else 503
//   GET /stats                the same figures as /metrics, as JSON
//   GET /peers                {"self": ..., "peers": [...]}: the ring's members
//   GET /groups/{group}/{key} the value through Group::Get (the key is
//                             URL-decoded): 200 with its bytes, 404 not found
//                             or unknown group, 400 empty or oversize key,
//                             503 when too many loads are in flight, 504 for a
//                             deadline, 500 for any other error
//
// Meant for probes, scrapers and people with curl, not as the data path: one
// request per connection (no keep-alive), each on a thread of its own while
// it lasts (httplib's model; threads are started as needed, up to
// `max_connections`, admin_thread_pool.h), so slow clients cannot starve the
// probes. A connection that sends nothing for `read_timeout`, or has not
// sent all of its request `request_timeout` after it was taken up, is closed
// (admin_connection.h), so slow clients cannot keep their threads either.
// Loads started through /groups are bounded (`max_inflight_loads`; more get
// 503 at once) so that slow getters cannot take every thread from hits and
// probes.
//
// With `tls`, the listener speaks HTTPS (the node's certificate, reloaded
// when its files change). Every path but /healthz and /readyz then needs a
// client certificate the CA signed if tls->client_auth asks for one, or the
// header "Authorization: Bearer <token>" if there is a `token`: either
// opens them (401 otherwise, the request unread). Probes stay open, as a
// kubelet's HTTPS probe shows no certificate.
//
// Thread-safety: the server's methods may be called from any thread.

#ifndef LCACHE_SRC_NODE_ADMIN_HTTP_H_
#define LCACHE_SRC_NODE_ADMIN_HTTP_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/group.h"
#include "lcache/peer_server.h"
#include "lcache/ring_picker.h"

namespace lcache::internal {

struct AdminHttpOptions {
  // host:port; port 0 picks a free one (see AdminHttpServer::port()).
  std::string address = {};
  // Not owned; must outlive the server.
  const GroupRegistry* registry = nullptr;
  // Not owned; must outlive the server. Null: no ring (/peers is empty).
  const RingPicker* picker = nullptr;
  // Readiness for /readyz (and /stats); null means always ready. Called on
  // request threads: must be cheap and must not block.
  std::function<bool()> ready = nullptr;
  // Connections served at once (a thread each); more wait to be accepted.
  int max_connections = 64;
  // A read or write that waits longer ends the connection.
  absl::Duration read_timeout = absl::Seconds(2);
  // All of a request (TLS handshake, headers, body) must come within this
  // after its connection is taken up, and all of a response must go within
  // it after its first byte; else the connection ends.
  absl::Duration request_timeout = absl::Seconds(10);
  // /groups misses allowed to wait on a load at once; more get 503.
  int max_inflight_loads = 8;
  // Empty: no bearer token.
  std::string token = {};
  // HTTPS; nullopt: plain HTTP. client_auth kRequest (or kRequire) makes a
  // CA-signed client certificate the key to the paths the token opens.
  std::optional<TlsOptions> tls = std::nullopt;
  // Hears of TLS files that changed and do not load, and of failed
  // handshakes (rate-limited). Null: spdlog::warn.
  std::function<void(const std::string&)> warn = nullptr;
};

class AdminHttpServer {
 public:
  // Binds and starts serving on a thread of its own.
  static absl::StatusOr<std::unique_ptr<AdminHttpServer>> Start(AdminHttpOptions options);

  ~AdminHttpServer();  // Stop()
  AdminHttpServer(const AdminHttpServer&) = delete;
  AdminHttpServer& operator=(const AdminHttpServer&) = delete;

  int port() const { return port_; }

  // Reads the TLS files again now (SIGHUP); OK without TLS. On an error the
  // previous files stay in use.
  absl::Status ReloadTls();

  // Closes the listening socket; requests in progress go on. Idempotent.
  void StopAccepting();
  // StopAccepting, then waits for the requests in progress (they cannot be
  // interrupted) and idle keep-alive connections (at most 2 s). Idempotent.
  void Stop();

 private:
  class Impl;
  explicit AdminHttpServer(std::unique_ptr<Impl> impl, int port);

  std::unique_ptr<Impl> impl_;
  const int port_;
};

// The /metrics text: metric families in a fixed order, groups sorted by name.
std::string RenderMetrics(const GroupRegistry& registry, const RingPicker* picker);

// The /stats document.
std::string RenderStatsJson(const GroupRegistry& registry, const RingPicker* picker, bool ready);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_NODE_ADMIN_HTTP_H_
