#include "node/admin_http.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"
#include "lcache/grpc_wire.h"
#include "lcache/origin.h"
#include "lcache/store.h"
#include "nlohmann/json.hpp"
#include "node/admin_connection.h"
#include "node/admin_thread_pool.h"
#include "peer/h2/tls.h"
#include "peer/warn_limiter.h"
#include "spdlog/spdlog.h"

namespace lcache::internal {
namespace {

// Shortest text that reads back as the same double (Prometheus parses it
// with Go's ParseFloat).
std::string FormatDouble(double v) {
  char buf[64];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string Seconds(int64_t ns) { return FormatDouble(static_cast<double>(ns) / 1e9); }

// A label value in the exposition format: backslash, quote and newline escaped.
std::string EscapeLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

struct GroupFigures {
  std::string name;
  GroupStats stats;
  const Origin* origin;  // null: a getter
  OriginStats origin_stats;
};

std::vector<GroupFigures> Collect(const GroupRegistry& registry) {
  std::vector<GroupFigures> out;
  for (Group* g : registry.Groups()) {
    out.push_back({g->name(), g->Stats(), g->origin(),
                   g->origin() != nullptr ? g->origin()->stats() : OriginStats{}});
  }
  std::sort(out.begin(), out.end(),
            [](const GroupFigures& a, const GroupFigures& b) { return a.name < b.name; });
  return out;
}

struct Figure {
  const char* name;  // without the lcache_ prefix (and _total for counters)
  const char* help;
  int64_t (*get)(const GroupStats&);
};

// The counters, in the order of the issue; groupcache's meanings.
constexpr Figure kCounters[] = {
    {"gets", "Get calls, including rejected ones.", [](const GroupStats& s) { return s.gets; }},
    {"hits", "Gets answered from the local store or the hot cache.",
     [](const GroupStats& s) { return s.cache_hits; }},
    {"hot_hits", "Of the hits, those answered from the hot cache (copies of peers' values).",
     [](const GroupStats& s) { return s.hot_hits; }},
    {"hot_keeps", "Values fetched from owner peers that were kept in the hot cache.",
     [](const GroupStats& s) { return s.hot_keeps; }},
    {"misses", "Gets that missed the local store (each went to the load path).",
     [](const GroupStats& s) { return s.loads; }},
    {"loads", "Misses that entered singleflight (groupcache's Loads; equals misses).",
     [](const GroupStats& s) { return s.loads; }},
    {"loads_deduped", "Loads that ran after singleflight: peer calls and getter calls.",
     [](const GroupStats& s) { return s.loads_deduped; }},
    {"local_loads", "Getter calls that succeeded.",
     [](const GroupStats& s) { return s.local_loads; }},
    {"local_load_errs", "Getter calls that failed.",
     [](const GroupStats& s) { return s.local_load_errs; }},
    {"peer_loads", "Keys answered by their owner peer (a value or not found).",
     [](const GroupStats& s) { return s.peer_loads; }},
    {"peer_errors", "Peer calls that failed (the key was then loaded locally).",
     [](const GroupStats& s) { return s.peer_errors; }},
    {"server_requests", "Requests that came from peers and clients over the peer protocol.",
     [](const GroupStats& s) { return s.server_requests; }},
    {"loads_cancelled",
     "Of those, misses dropped before their load started: the caller's deadline passed or it "
     "went away (reset its stream, closed its connection).",
     [](const GroupStats& s) { return s.loads_cancelled; }},
    {"sets", "Set calls made on this node (one forwarded here counts where it was made).",
     [](const GroupStats& s) { return s.sets; }},
    {"removes", "Remove calls made on this node (likewise).",
     [](const GroupStats& s) { return s.removes; }},
    {"invalidations_sent", "Invalidate messages sent to peers by this node as a key's owner.",
     [](const GroupStats& s) { return s.invalidations_sent; }},
    {"invalidations_unacked",
     "Of those, not acknowledged in time (the peer may keep a copy up to -hot-max-age).",
     [](const GroupStats& s) { return s.invalidations_unacked; }},
    {"invalidations_received", "Invalidate messages from owners applied here.",
     [](const GroupStats& s) { return s.invalidations_received; }},
    {"loads_discarded",
     "Loaded values not stored because a Set, Remove or Invalidate of their key came while "
     "they loaded.",
     [](const GroupStats& s) { return s.loads_discarded; }},
    {"peek_hits", "Loads answered by a previous owner's copy after a ring change (getter calls avoided).",
     [](const GroupStats& s) { return s.peek_hits; }},
    {"peek_misses", "Peeks at a previous owner that found nothing or failed (the getter ran).",
     [](const GroupStats& s) { return s.peek_misses; }},
    {"peeks_served", "Peek requests this node answered with a stored copy.",
     [](const GroupStats& s) { return s.peeks_served; }},
    {"handoff_entries_sent", "Entries this node handed off to their heirs before leaving.",
     [](const GroupStats& s) { return s.handoff_entries_sent; }},
    {"handoff_bytes_sent", "Bytes (len(key) + len(value)) of those.",
     [](const GroupStats& s) { return s.handoff_bytes_sent; }},
    {"handoffs_kept", "Handed-off entries this node kept.",
     [](const GroupStats& s) { return s.handoffs_kept; }},
    {"handoffs_refused",
     "Handed-off entries not kept: a value was held already, or the key changed lately.",
     [](const GroupStats& s) { return s.handoffs_refused; }},
    {"replicas_pushed", "Values this node pushed to their replica holders as the owner (acknowledged).",
     [](const GroupStats& s) { return s.replicas_pushed; }},
    {"replica_bytes_pushed", "Bytes (len(key) + len(value)) of those.",
     [](const GroupStats& s) { return s.replica_bytes_pushed; }},
    {"replica_push_failures", "Replica pushes that failed or were not answered in time.",
     [](const GroupStats& s) { return s.replica_push_failures; }},
    {"replicas_kept", "Replicas pushed here by owners that the replica store kept.",
     [](const GroupStats& s) { return s.replicas_kept; }},
    {"replicas_refused",
     "Replicas pushed here and not kept: the key changed lately, no replica store, or too large.",
     [](const GroupStats& s) { return s.replicas_refused; }},
    {"replica_hits",
     "Loads answered from the replica store, for a failed owner or as its heir (getter calls "
     "avoided).",
     [](const GroupStats& s) { return s.replica_hits; }},
    {"stand_in_calls", "Calls to a failed owner's stand-in (its first replica holder).",
     [](const GroupStats& s) { return s.stand_in_calls; }},
    {"replicas_promoted",
     "Replicas of keys this node inherited (their owner left the ring) moved to its store.",
     [](const GroupStats& s) { return s.replicas_promoted; }},
    {"replica_resyncs", "Re-replications after ring changes completed.",
     [](const GroupStats& s) { return s.replica_resyncs; }},
    {"replica_invalidations_retried",
     "Invalidations replica holders had not acknowledged, acknowledged when sent again.",
     [](const GroupStats& s) { return s.replica_invalidations_retried; }},
    {"replica_invalidations_dropped",
     "Invalidations replica holders had not acknowledged that were not kept to send again (the "
     "list was full).",
     [](const GroupStats& s) { return s.replica_invalidations_dropped; }},
    {"evictions", "Entries evicted to stay within the cache's bytes.",
     [](const GroupStats& s) { return s.store.evictions; }},
    {"hot_evictions", "Hot cache entries evicted to stay within its bytes.",
     [](const GroupStats& s) { return s.hot_store.evictions; }},
    {"expirations", "Entries found or swept expired.",
     [](const GroupStats& s) { return s.store.expirations; }},
};

constexpr Figure kGauges[] = {
    {"items", "Entries in the local store.", [](const GroupStats& s) { return s.store.items; }},
    {"bytes", "len(key) + len(value) of the entries in the local store.",
     [](const GroupStats& s) { return s.store.bytes; }},
    {"capacity_bytes", "The local store's budget of len(key) + len(value) (0 = unbounded).",
     [](const GroupStats& s) { return s.store.capacity_bytes; }},
    {"hot_items", "Entries in the hot cache.",
     [](const GroupStats& s) { return s.hot_store.items; }},
    {"hot_bytes", "len(key) + len(value) of the entries in the hot cache.",
     [](const GroupStats& s) { return s.hot_store.bytes; }},
    {"hot_capacity_bytes", "The hot cache's budget (0 = no hot cache).",
     [](const GroupStats& s) { return s.hot_store.capacity_bytes; }},
    {"replica_items", "Replicas held for other nodes' keys.",
     [](const GroupStats& s) { return s.replica_store.items; }},
    {"replica_bytes", "len(key) + len(value) of those.",
     [](const GroupStats& s) { return s.replica_store.bytes; }},
    {"replica_capacity_bytes", "The replica store's budget (0 = no replicas).",
     [](const GroupStats& s) { return s.replica_store.capacity_bytes; }},
    {"replica_invalidations_pending",
     "Invalidations replica holders have not acknowledged yet, to be sent again.",
     [](const GroupStats& s) { return s.replica_invalidations_pending; }},
};

struct Histogram {
  const char* name;
  const char* help;
  LatencySnapshot GroupStats::*field;
};

constexpr Histogram kHistograms[] = {
    {"get_miss_duration_seconds",
     "Gets that missed the local store, from the miss to the answer (hits are not timed).",
     &GroupStats::get_miss_latency},
    {"peer_call_duration_seconds", "Calls to owner peers, answered or failed.",
     &GroupStats::peer_latency},
    {"getter_duration_seconds", "Getter calls (local loads), succeeded or failed.",
     &GroupStats::getter_latency},
};

void AppendHeader(std::string& out, const std::string& name, const char* help, const char* type) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

// `labels`: the series' labels, escaped, without braces (group="g").
void AppendHistogram(std::string& out, const std::string& name, const std::string& labels,
                     const LatencySnapshot& h) {
  int64_t cumulative = 0;
  for (size_t b = 0; b < kLatencyBucketBoundsNs.size(); ++b) {
    cumulative += h.counts[b];
    absl::StrAppend(&out, name, "_bucket{", labels, ",le=\"", Seconds(kLatencyBucketBoundsNs[b]),
                    "\"} ", cumulative, "\n");
  }
  absl::StrAppend(&out, name, "_bucket{", labels, ",le=\"+Inf\"} ", h.count, "\n");
  absl::StrAppend(&out, name, "_sum{", labels, "} ", Seconds(absl::ToInt64Nanoseconds(h.sum)),
                  "\n");
  absl::StrAppend(&out, name, "_count{", labels, "} ", h.count, "\n");
}

// The origins' figures (groups loading through an Origin), labelled by group
// and kind of origin.
struct OriginFigure {
  const char* name;
  const char* help;
  int64_t OriginStats::*field;
};

constexpr OriginFigure kOriginCounters[] = {
    {"lcache_origin_requests_total", "Loads asked of the group's origin.", &OriginStats::requests},
    {"lcache_origin_not_found_total", "Origin requests answered: no such key.",
     &OriginStats::not_found},
    {"lcache_origin_errors_total",
     "Origin requests that failed: timeouts, unreachable, answers that are not values.",
     &OriginStats::errors},
    {"lcache_origin_uncacheable_total",
     "Values the origin said not to keep (Cache-Control: no-store and the like).",
     &OriginStats::uncacheable},
};

void AppendOrigins(std::string& out, const std::vector<GroupFigures>& groups) {
  std::vector<std::pair<const GroupFigures*, std::string>> series;
  for (const GroupFigures& g : groups) {
    if (g.origin == nullptr) continue;
    series.emplace_back(&g, absl::StrCat("group=\"", EscapeLabel(g.name), "\",origin=\"",
                                         EscapeLabel(g.origin->kind()), "\""));
  }
  if (series.empty()) return;
  for (const OriginFigure& f : kOriginCounters) {
    AppendHeader(out, f.name, f.help, "counter");
    for (const auto& [g, labels] : series) {
      absl::StrAppend(&out, f.name, "{", labels, "} ", g->origin_stats.*f.field, "\n");
    }
  }
  const std::string name = "lcache_origin_request_duration_seconds";
  AppendHeader(out, name, "Origin requests, from the call to the answer or the failure.",
               "histogram");
  for (const auto& [g, labels] : series) AppendHistogram(out, name, labels, g->origin_stats.latency);
}

nlohmann::json HistogramJson(const LatencySnapshot& h) {
  nlohmann::json buckets = nlohmann::json::array();
  int64_t cumulative = 0;
  for (size_t b = 0; b < kLatencyBucketBoundsNs.size(); ++b) {
    cumulative += h.counts[b];
    buckets.push_back({{"le_seconds", static_cast<double>(kLatencyBucketBoundsNs[b]) / 1e9},
                       {"count", cumulative}});
  }
  return {{"count", h.count},
          {"sum_seconds", absl::ToDoubleSeconds(h.sum)},
          {"buckets", std::move(buckets)}};
}

std::string Dump(const nlohmann::json& j) {
  // Keys are bytes, not always UTF-8: replace what JSON cannot carry.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::vector<std::string> PeersOf(const RingPicker* picker) {
  return picker != nullptr ? picker->Peers() : std::vector<std::string>{};
}

// "host:port" or "[v6]:port" -> host (brackets removed) and port.
bool ParseListenAddress(const std::string& address, std::string* host, int* port) {
  const std::optional<wire::HostPort> split = wire::SplitHostPort(address);
  if (!split || split->host.empty()) return false;
  *host = split->host;
  return absl::SimpleAtoi(split->port, port) && *port >= 0 && *port <= 65535;
}

// The HTTP status of a Group::Get error.
int HttpStatusOf(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kUnimplemented:  // a Set or Remove whose owner is a Go node
      return 501;
    default:
      return 500;
  }
}

void Text(httplib::Response& res, int status, std::string_view body) {
  res.status = status;
  res.set_content(std::string(body) + "\n", "text/plain; charset=utf-8");
}

}  // namespace

std::string RenderMetrics(const GroupRegistry& registry, const RingPicker* picker) {
  const std::vector<GroupFigures> groups = Collect(registry);
  std::vector<std::string> labels;
  for (const GroupFigures& g : groups) labels.push_back(EscapeLabel(g.name));
  std::string out;
  for (const Figure& f : kCounters) {
    const std::string name = absl::StrCat("lcache_", f.name, "_total");
    AppendHeader(out, name, f.help, "counter");
    for (size_t i = 0; i < groups.size(); ++i) {
      absl::StrAppend(&out, name, "{group=\"", labels[i], "\"} ", f.get(groups[i].stats), "\n");
    }
  }
  for (const Figure& f : kGauges) {
    const std::string name = absl::StrCat("lcache_", f.name);
    AppendHeader(out, name, f.help, "gauge");
    for (size_t i = 0; i < groups.size(); ++i) {
      absl::StrAppend(&out, name, "{group=\"", labels[i], "\"} ", f.get(groups[i].stats), "\n");
    }
  }
  AppendHeader(out, "lcache_peers",
               "Addresses on this node's hash ring, itself included if listed.", "gauge");
  absl::StrAppend(&out, "lcache_peers ", PeersOf(picker).size(), "\n");
  // Outlier ejection (RingPicker): node-wide, like the ring.
  const EjectionStats ej = picker != nullptr ? picker->ejection_stats() : EjectionStats{};
  const struct {
    const char* name;
    const char* help;
    int64_t value;
  } ejection[] = {
      {"lcache_peer_ejections_total",
       "Peers taken out after consecutive failures (failed probes included).", ej.ejections},
      {"lcache_peer_returns_total", "Ejected peers back after a successful probe.", ej.returns},
      {"lcache_peer_probes_total", "Probe requests sent to ejected peers.", ej.probes},
      {"lcache_peer_ejection_skips_total", "Keys loaded locally because their owner was ejected.",
       ej.skipped},
  };
  for (const auto& e : ejection) {
    AppendHeader(out, e.name, e.help, "counter");
    absl::StrAppend(&out, e.name, " ", e.value, "\n");
  }
  AppendHeader(out, "lcache_peers_ejected", "Peers ejected (or being probed) now.", "gauge");
  absl::StrAppend(&out, "lcache_peers_ejected ", ej.out_now, "\n");
  for (const Histogram& h : kHistograms) {
    const std::string name = absl::StrCat("lcache_", h.name);
    AppendHeader(out, name, h.help, "histogram");
    for (size_t i = 0; i < groups.size(); ++i) {
      AppendHistogram(out, name, absl::StrCat("group=\"", labels[i], "\""),
                      groups[i].stats.*h.field);
    }
  }
  AppendOrigins(out, groups);
  return out;
}

std::string RenderStatsJson(const GroupRegistry& registry, const RingPicker* picker, bool ready) {
  nlohmann::json groups = nlohmann::json::object();
  for (const GroupFigures& g : Collect(registry)) {
    nlohmann::json j = nlohmann::json::object();
    for (const Figure& f : kCounters) j[f.name] = f.get(g.stats);
    for (const Figure& f : kGauges) j[f.name] = f.get(g.stats);
    nlohmann::json latency = nlohmann::json::object();
    for (const Histogram& h : kHistograms) latency[h.name] = HistogramJson(g.stats.*h.field);
    j["latency"] = std::move(latency);
    if (g.origin != nullptr) {
      nlohmann::json o = {{"kind", std::string(g.origin->kind())},
                          {"endpoint", g.origin->endpoint()}};
      for (const OriginFigure& f : kOriginCounters) {
        o[std::string_view(f.name).substr(14)] = g.origin_stats.*f.field;  // no "lcache_origin_"
      }
      o["latency"] = HistogramJson(g.origin_stats.latency);
      j["origin"] = std::move(o);
    }
    groups[g.name] = std::move(j);
  }
  const std::vector<std::string> peers = PeersOf(picker);
  return Dump({{"ready", ready},
               {"self", picker != nullptr ? std::string(picker->self()) : ""},
               {"peers", peers},
               {"groups", std::move(groups)}});
}

// Compares in time independent of where the strings differ.
bool SameSecret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::string_view x = a.size() == b.size() ? a : b;
  for (size_t i = 0; i < b.size(); ++i) diff |= static_cast<unsigned char>(x[i] ^ b[i]);
  return diff == 0;
}

namespace {

// httplib's server on connections of our own (admin_connection.h): TLS from
// our TlsContext, deadlines for whole requests and responses.
class AdminListener final : public httplib::Server {
 public:
  AdminListener(std::shared_ptr<TlsContext> tls, AdminConnection::Timeouts timeouts,
                WarnLimiter* warn)
      : tls_(std::move(tls)), timeouts_(timeouts), warn_(warn) {}

  // Whether the client of the request this thread serves showed a
  // certificate the CA signed. For the handlers.
  static bool PeerVerified() { return current_ != nullptr && current_->PeerVerified(); }

 private:
  // Replaces httplib's (private, virtual): the same request handling
  // (process_request) on our stream, one request per connection.
  bool process_and_close_socket(socket_t sock) override {
    // As httplib's own: connections still queued when the server stops are
    // closed unserved (each would otherwise take its whole deadline first).
    if (svr_sock_ == INVALID_SOCKET) {
      close(sock);
      return false;
    }
    SSL* ssl = nullptr;
    if (tls_ != nullptr) BlockSigpipeInThisThread();  // a thread of ours (admin_thread_pool.h)
    if (tls_ != nullptr && (ssl = tls_->NewSsl(sock)) == nullptr) {
      close(sock);
      return false;
    }
    AdminConnection connection(sock, ssl, timeouts_);
    if (!connection.Handshake()) {
      warn_->Count(WarnLimiter::kTlsFailed, [&] {
        return absl::StrCat("admin HTTP: TLS with ", connection.RemoteAddress(),
                            " failed: ", connection.error());
      });
      return false;
    }
    current_ = &connection;
    absl::Cleanup forget = [] { current_ = nullptr; };
    bool closed = false;
    const bool ok = process_request(connection, /*close_connection=*/true, closed, nullptr);
    if (connection.error() == AdminConnection::kTimedOut) {
      warn_->Count(WarnLimiter::kRequestTimedOut, [&] {
        return absl::StrCat("admin HTTP: cut off ", connection.RemoteAddress(),
                            ", whose request or response was not done within the request "
                            "timeout, or that sent or read nothing for the read timeout");
      });
    }
    return ok;
  }

  static thread_local const AdminConnection* current_;
  const std::shared_ptr<TlsContext> tls_;
  const AdminConnection::Timeouts timeouts_;
  WarnLimiter* const warn_;
};

thread_local const AdminConnection* AdminListener::current_ = nullptr;

}  // namespace

class AdminHttpServer::Impl {
 public:
  Impl(AdminHttpOptions options, std::shared_ptr<TlsContext> tls)
      : options_(std::move(options)),
        tls_(std::move(tls)),
        warn_(options_.warn, absl::Seconds(10)),
        server_(tls_,
                {.idle = options_.read_timeout,
                 .request = options_.request_timeout,
                 .response = options_.request_timeout},
                &warn_) {
    const int threads = std::max(1, options_.max_connections);
    server_.new_task_queue = [threads] { return new ElasticThreadPool(threads); };
    // One request per connection: no idle keep-alive connection holds a
    // thread.
    server_.set_keep_alive_max_count(1);
    // "Expect: 100-continue" is answered before routing: refuse there too,
    // so that a client without the key is not invited to send its body.
    server_.set_expect_100_continue_handler(
        [this](const httplib::Request& req, httplib::Response& res) {
          return Authorized(req, res) ? 100 : res.status;
        });
    server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      return Authorized(req, res) ? httplib::Server::HandlerResponse::Unhandled
                                  : httplib::Server::HandlerResponse::Handled;
    });
    // httplib's default also sets SO_REUSEPORT, which would let a second
    // node bind the same port and silently share its traffic; a taken port
    // must be an error instead. SO_REUSEADDR only allows a quick restart.
    server_.set_socket_options([](socket_t sock) {
      const int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    server_.set_payload_max_length(64 << 10);
    server_.set_exception_handler(
        [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown exception";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          spdlog::error("http {} {}: {}", req.method, req.path, what);
          Text(res, 500, "internal error");
        });
    Routes();
  }

  absl::StatusOr<int> Bind() {
    std::string host;
    int port = 0;
    if (!ParseListenAddress(options_.address, &host, &port)) {
      return absl::InvalidArgumentError(
          absl::StrCat("-http: expected host:port (e.g. 127.0.0.1:8080 or 0.0.0.0:8080), got \"",
                       options_.address, "\""));
    }
    if (port == 0) {
      port = server_.bind_to_any_port(host);
      if (port <= 0) port = 0;
    } else if (!server_.bind_to_port(host, port)) {
      port = 0;
    }
    if (port == 0) {
      return absl::UnavailableError(
          absl::StrCat("-http: cannot listen on \"", options_.address, "\" (in use?)"));
    }
    return port;
  }

  void Run() {
    thread_ = std::thread([this] {
      server_.listen_after_bind();
      listen_returned_.store(true);
    });
    // stop() is a no-op until the loop runs; wait for it (it starts at once).
    while (!server_.is_running() && !listen_returned_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  void StopAccepting() { server_.stop(); }

  absl::Status ReloadTls() { return tls_ != nullptr ? tls_->Reload() : absl::OkStatus(); }

  void Stop() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  bool Ready() const { return options_.ready == nullptr || options_.ready(); }

  bool ClientCertificates() const {
    return options_.tls && options_.tls->client_auth != TlsOptions::ClientAuth::kNone;
  }

  // Before routing (and before a body is read): probes are open; the rest
  // needs the token or a CA-signed client certificate, when either is set.
  bool Authorized(const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/healthz" || req.path == "/readyz") return true;
    if (options_.token.empty() && !ClientCertificates()) return true;
    if (ClientCertificates() && AdminListener::PeerVerified()) return true;
    const std::string auth = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (!options_.token.empty() && auth.size() > kBearer.size() && auth.starts_with(kBearer) &&
        SameSecret(std::string_view(auth).substr(kBearer.size()), options_.token)) {
      return true;
    }
    if (!options_.token.empty()) res.set_header("WWW-Authenticate", "Bearer");
    std::string needs;
    if (ClientCertificates()) needs = "a client certificate signed by -tls-ca";
    if (!options_.token.empty()) {
      absl::StrAppend(&needs, needs.empty() ? "" : ", or ",
                      "\"Authorization: Bearer <token>\" (-http-token-file)");
    }
    Text(res, 401, absl::StrCat("lcache: this path needs ", needs));
    return false;
  }

  void Routes() {
    server_.Get("/healthz",
                [](const httplib::Request&, httplib::Response& res) { Text(res, 200, "ok"); });
    server_.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
      if (Ready()) {
        Text(res, 200, "ready");
      } else {
        Text(res, 503, "not ready");
      }
    });
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(RenderMetrics(*options_.registry, options_.picker),
                      "text/plain; version=0.0.4; charset=utf-8");
    });
    server_.Get("/stats", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(RenderStatsJson(*options_.registry, options_.picker, Ready()),
                      "application/json");
    });
    server_.Get("/peers", [this](const httplib::Request&, httplib::Response& res) {
      const RingPicker* p = options_.picker;
      res.set_content(
          Dump({{"self", p != nullptr ? std::string(p->self()) : ""}, {"peers", PeersOf(p)}}),
          "application/json");
    });
    // [\s\S]: a key may hold any byte, a newline included (sent as %0A).
    constexpr char kGroupKey[] = R"(/groups/([^/]*)/([\s\S]*))";
    server_.Get(kGroupKey, [this](const httplib::Request& req, httplib::Response& res) {
      ServeGet(req.matches[1].str(), req.matches[2].str(), res);
    });
    // Set (body = the value, ?ttl_ms=N) and Remove, across the cluster.
    server_.Put(kGroupKey, [this](const httplib::Request& req, httplib::Response& res) {
      ServeMutation(req, true, res);
    });
    server_.Delete(kGroupKey, [this](const httplib::Request& req, httplib::Response& res) {
      ServeMutation(req, false, res);
    });
  }

  // 200 with {"unacked":[...]} (the nodes that did not acknowledge dropping
  // their copies) once the owner applied it; errors as for GET, plus 501 when
  // the key's owner is a Go node.
  void ServeMutation(const httplib::Request& req, bool set, httplib::Response& res) {
    const std::string group_name = req.matches[1].str();
    const std::string key = req.matches[2].str();
    Group* group = options_.registry->GetGroup(group_name);
    if (group == nullptr) {
      Text(res, 404, absl::StrCat("lcache: no group \"", group_name, "\" on this node"));
      return;
    }
    std::optional<absl::Duration> ttl;
    if (req.has_param("ttl_ms")) {
      if (!set) {
        Text(res, 400, "lcache: ttl_ms is for PUT");
        return;
      }
      int64_t ms = 0;
      const std::string text = req.get_param_value("ttl_ms");
      if (!absl::SimpleAtoi(text, &ms) || ms < 0) {
        Text(res, 400,
             absl::StrCat("lcache: ttl_ms must be an integer >= 0 (0: never expires), got \"",
                          absl::CHexEscape(text), "\""));
        return;
      }
      ttl = absl::Milliseconds(ms);
    }
    absl::StatusOr<MutationResult> r = set ? group->Set(key, req.body, ttl) : group->Remove(key);
    if (!r.ok()) {
      const absl::string_view message = r.status().message();
      Text(res, HttpStatusOf(r.status()), std::string_view(message.data(), message.size()));
      return;
    }
    res.set_content(Dump({{"unacked", r->unacknowledged}}), "application/json");
  }

  void ServeGet(const std::string& group_name, const std::string& key, httplib::Response& res) {
    Group* group = options_.registry->GetGroup(group_name);
    if (group == nullptr) {
      Text(res, 404, absl::StrCat("lcache: no group \"", group_name, "\" on this node"));
      return;
    }
    if (key.empty()) {
      Text(res, 400, kEmptyKeyMessage);
      return;
    }
    // Hits never wait for a load slot. Longer keys cannot be in the store;
    // Group::Get rejects them below.
    if (key.size() <= kMaxStoreKeyBytes) {
      if (std::optional<ExpiringValue> hit = group->GetIfCached(key)) {
        res.set_content(std::string(hit->value.view()), "application/octet-stream");
        return;
      }
    }
    if (inflight_loads_.fetch_add(1, std::memory_order_acq_rel) >= options_.max_inflight_loads) {
      inflight_loads_.fetch_sub(1, std::memory_order_acq_rel);
      res.set_header("Retry-After", "1");
      Text(res, 503,
           absl::StrCat("lcache: overloaded (", options_.max_inflight_loads,
                        " loads in flight through HTTP)"));
      return;
    }
    absl::StatusOr<ByteView> v = group->Get(key);
    inflight_loads_.fetch_sub(1, std::memory_order_acq_rel);
    if (v.ok()) {
      res.set_content(std::string(v->view()), "application/octet-stream");
      return;
    }
    const absl::string_view message = v.status().message();
    Text(res, HttpStatusOf(v.status()), std::string_view(message.data(), message.size()));
  }

  const AdminHttpOptions options_;
  const std::shared_ptr<TlsContext> tls_;  // null: plain HTTP
  WarnLimiter warn_;
  AdminListener server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};
  std::atomic<int> inflight_loads_{0};
};

absl::StatusOr<std::unique_ptr<AdminHttpServer>> AdminHttpServer::Start(AdminHttpOptions options) {
  if (options.registry == nullptr) {
    return absl::InvalidArgumentError("AdminHttpOptions.registry is null");
  }
  if (options.max_inflight_loads < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdminHttpOptions.max_inflight_loads must be >= 0, got ", options.max_inflight_loads));
  }
  if (options.request_timeout <= absl::ZeroDuration() ||
      options.read_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "lcache: the admin listener's read and request timeouts must be positive");
  }
  if (options.warn == nullptr) {
    options.warn = [](const std::string& line) { spdlog::warn("{}", line); };
  }
  std::shared_ptr<TlsContext> tls;
  if (options.tls) {
    absl::StatusOr<std::shared_ptr<TlsContext>> context =
        TlsContext::Create(TlsContext::Side::kHttp1Server, *options.tls, options.warn);
    if (!context.ok()) return context.status();
    tls = *std::move(context);
  }
  auto impl = std::make_unique<Impl>(std::move(options), std::move(tls));
  absl::StatusOr<int> port = impl->Bind();
  if (!port.ok()) return port.status();
  impl->Run();
  return std::unique_ptr<AdminHttpServer>(new AdminHttpServer(std::move(impl), *port));
}

AdminHttpServer::AdminHttpServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), port_(port) {}

AdminHttpServer::~AdminHttpServer() { Stop(); }

void AdminHttpServer::StopAccepting() { impl_->StopAccepting(); }

void AdminHttpServer::Stop() { impl_->Stop(); }

absl::Status AdminHttpServer::ReloadTls() { return impl_->ReloadTls(); }

}  // namespace lcache::internal
