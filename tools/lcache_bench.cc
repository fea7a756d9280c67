// lcache-bench: a closed-loop load generator for the peer protocol.
//
//   lcache-bench -targets 127.0.0.1:9001,127.0.0.1:9002 -concurrency 32
//                -duration-s 10 -warmup-s 2 -keys 100000 -dist zipf -zipf-s 0.99
//
// `concurrency` calls are in flight at all times: each call's completion
// starts the next one. Calls spread round-robin over the targets (one HTTP/2
// connection per target, all calls multiplexed on it), keys are drawn
// uniformly or by Zipf from k0..k{keys-1}, and requests carry no forwarding
// mark, so each node routes them by its ring like any client's. The node
// serves whatever values its -source gives (synthetic:BYTES for a size).
//
// -dist sequential takes the keys in turn instead, k0, k1, ... cycling (one
// counter for all calls), and sends key i of pass p to target (i + p) mod
// targets: which node is asked for which key does not depend on which call
// finished first; one pass spreads the keys over the targets, and as many
// passes as there are targets ask every node for every key.
//
// The measured window ends after -duration-s, or, with -requests N, once N
// calls have completed: exactly N are sent, and all are measured
// (-duration-s and -warmup-s are then ignored), so
//   lcache-bench -dist sequential -requests 20000 -keys 20000 ...
// asks for every key exactly once, the count a script can check origin
// loads against (-requests 60000 on 3 targets: each node for each key).
// SIGINT or SIGTERM ends the window early and still prints the results: a
// script can keep load on a cluster for as long as an event takes
// (bench/net_warm_cluster.py).
//
// -tls-ca (and -tls-cert, -tls-key for mutual TLS) speak TLS to the nodes,
// as lcache-cli's flags of the same names do; cleartext without them.
//
// Everything runs on one thread, on GrpcLoadClient (grpc_load_client.h):
// pre-encoded request frames out, nghttp2's HPACK decoder for the answers,
// so the generator costs about half the CPU per call of the node it
// measures, most of it the kernel's (docs/BENCHMARKS.md). It reports its
// own, user and kernel (getrusage over the measured window), so a reader
// can check that.
//
// Output: QPS, latency p50/p90/p99/p99.9/max over the calls that completed
// in the measured window, errors by gRPC status (and in-band `err` answers
// by their text) with the first message of each; -json for scripts. A
// progress line on stderr when it is a terminal.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "go_flags.h"
#include "grpc_load_client.h"
#include "lcache/peer_server.h"
#include "lcache/json_codec.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, targets, "127.0.0.1:9000", "comma-separated nodes (host:port)");
ABSL_FLAG(std::string, group, "scores", "the group");
ABSL_FLAG(int32_t, concurrency, 32, "calls in flight");
ABSL_FLAG(double, duration_s, 10, "measured seconds (ignored with -requests)");
ABSL_FLAG(double, warmup_s, 2, "seconds of load before measuring (ignored with -requests)");
ABSL_FLAG(int64_t, requests, 0,
          "send exactly this many calls, all measured, then stop (0: run for -duration-s)");
ABSL_FLAG(int64_t, keys, 1000, "key space: k0 .. k{keys-1}");
ABSL_FLAG(std::string, dist, "uniform",
          "key distribution: uniform, zipf, or sequential (k0, k1, ... in turn, cycling)");
ABSL_FLAG(double, zipf_s, 0.99, "Zipf exponent (with -dist zipf)");
ABSL_FLAG(uint64_t, seed, 1, "random seed");
ABSL_FLAG(int64_t, timeout_ms, 2000, "deadline of each call");
ABSL_FLAG(bool, forwarded, false, "mark requests as forwarded (served by the node, never routed)");
ABSL_FLAG(bool, json, false, "print the results as one JSON object");
ABSL_FLAG(std::string, tls_ca, "",
          "speak TLS, verifying the nodes against this CA (PEM); \"system\": the system's CAs");
ABSL_FLAG(std::string, tls_cert, "", "TLS: a client certificate (PEM) for nodes that ask for one");
ABSL_FLAG(std::string, tls_key, "", "TLS: the client certificate's key (PEM)");

namespace lcache::tools {
namespace {

// Draws key indexes: uniform, Zipf by inverse CDF (a table of n doubles), or
// 0, 1, ..., n-1 in turn, pass after pass. One chooser serves every call (one
// thread), so sequential keys are in turn across all calls, not per chain.
class KeyChooser {
 public:
  KeyChooser(int64_t n, const std::string& dist, double s, uint64_t seed)
      : n_(n), sequential_(dist == "sequential"), random_(seed) {
    if (dist != "zipf") return;
    cdf_.resize(static_cast<size_t>(n));
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i + 1), s);
      cdf_[static_cast<size_t>(i)] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  bool sequential() const { return sequential_; }
  // Sequential: the pass of the key Next() returned last (0 first).
  int64_t pass() const { return (drawn_ - 1) / n_; }
  int64_t Next() {
    if (sequential_) return drawn_++ % n_;
    if (cdf_.empty()) return std::uniform_int_distribution<int64_t>(0, n_ - 1)(random_);
    const double u = std::uniform_real_distribution<double>(0, 1)(random_);
    return std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin();
  }

 private:
  const int64_t n_;
  const bool sequential_;
  int64_t drawn_ = 0;  // sequential: keys drawn so far
  std::mt19937_64 random_;
  std::vector<double> cdf_;
};

// The requests for keys k0..k{n-1}, as wire::EncodeGetRequest writes them, into one
// buffer: no string per call. A key is "k" and digits, which JSON writes as
// they are, so each request is the one for "k" with the digits spliced in
// after its "k". Checked against wire::EncodeGetRequest at start; if that ever
// writes something else, every request is encoded by it.
class RequestWriter {
 public:
  explicit RequestWriter(std::string group) : group_(std::move(group)) {
    const std::string k = wire::EncodeGetRequest(group_, "k");
    const size_t at = k.rfind("\"k\"");
    if (at == std::string::npos) return;
    prefix_ = k.substr(0, at + 2);
    suffix_ = k.substr(at + 2);
    for (int64_t key : {0LL, 7LL, 1234567890LL}) {
      if (std::string(Write(key)) != wire::EncodeGetRequest(group_, absl::StrCat("k", key))) {
        prefix_.clear();
        return;
      }
    }
  }
  // Valid until the next Write.
  std::string_view Write(int64_t key) {
    if (prefix_.empty()) {
      buffer_ = wire::EncodeGetRequest(group_, absl::StrCat("k", key));
      return buffer_;
    }
    char digits[24];
    const char* end = std::to_chars(digits, digits + sizeof digits, key).ptr;
    buffer_.assign(prefix_);
    buffer_.append(digits, static_cast<size_t>(end - digits));
    buffer_.append(suffix_);
    return buffer_;
  }

 private:
  const std::string group_;
  std::string prefix_;  // empty: wire::EncodeGetRequest for each
  std::string suffix_;
  std::string buffer_;
};

// This process's CPU time, user and kernel, in seconds.
struct Cpu {
  double user = 0;
  double system = 0;
};
Cpu CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return {seconds(u.ru_utime), seconds(u.ru_stime)};
}

// The closed loop: `concurrency` chains of calls, each call's completion
// starting its chain's next. Runs on the caller's thread, inside Poll.
class Bench {
 public:
  Bench()
      : keys_(absl::GetFlag(FLAGS_keys), absl::GetFlag(FLAGS_dist), absl::GetFlag(FLAGS_zipf_s),
              absl::GetFlag(FLAGS_seed)),
        requests_(absl::GetFlag(FLAGS_group)) {}

  // Starts the chains, spread round-robin over the targets (sequential keys:
  // each call to its key's target, key + pass). `limit` > 0: issue that many
  // calls in all, then none.
  void Start(GrpcLoadClient* client, int concurrency, int64_t limit) {
    client_ = client;
    limit_ = limit;
    calls_ = std::vector<GrpcLoadClient::Call>(static_cast<size_t>(concurrency));
    for (size_t i = 0; i < calls_.size(); ++i) Issue(&calls_[i], i);
  }
  // From now on, completions are counted.
  void BeginMeasuring() {
    latencies_us_.clear();
    errors_.clear();
    error_messages_.clear();
    ok_ = 0;
    measuring_ = true;
  }
  // Stop counting and stop issuing.
  void EndMeasuring() {
    measuring_ = false;
    stopping_ = true;
  }

  // A call is counted ok only if its answer decodes and carries no `err`:
  // the protocol answers application errors (key not found, unknown group)
  // with gRPC status OK and the text in `err`.
  void Completed(GrpcLoadClient::Call* call, const absl::Status& status, std::string_view message,
                 absl::Duration latency) {
    ++completed_;
    if (measuring_) {
      if (!status.ok()) {
        const std::string code = absl::StatusCodeToString(status.code());
        if (++errors_[code] == 1) error_messages_[code] = std::string(status.message());
      } else if (absl::StatusOr<wire::GetResponse> answer = wire::DecodeGetResponse(message);
                 !answer.ok()) {
        ++errors_["bad answer"];
      } else if (!answer->err.empty()) {
        ++errors_[absl::StrCat("err: ", answer->err.substr(0, 100))];
      } else {
        ++ok_;
        latencies_us_.push_back(static_cast<uint32_t>(
            std::min<int64_t>(absl::ToInt64Microseconds(latency), UINT32_MAX)));
      }
    }
    Issue(call, static_cast<size_t>(call - calls_.data()));
  }

  int64_t completed_ = 0;  // all completions, for the progress line
  std::vector<uint32_t> latencies_us_;
  std::map<std::string, int64_t> errors_;
  std::map<std::string, std::string> error_messages_;  // the first of each gRPC status
  int64_t ok_ = 0;

 private:
  void Issue(GrpcLoadClient::Call* call, size_t chain) {
    if (stopping_ || (limit_ > 0 && issued_ >= limit_)) return;
    ++issued_;
    const int64_t key = keys_.Next();
    client_->Start(call, keys_.sequential() ? static_cast<size_t>(key + keys_.pass()) : chain,
                   requests_.Write(key));
  }

  KeyChooser keys_;
  RequestWriter requests_;
  GrpcLoadClient* client_ = nullptr;
  std::vector<GrpcLoadClient::Call> calls_;
  bool measuring_ = false;
  bool stopping_ = false;
  int64_t limit_ = 0;  // 0: no limit
  int64_t issued_ = 0;
};

// Set by SIGINT or SIGTERM: end the measured window and report.
volatile std::sig_atomic_t stop_signal = 0;
extern "C" void OnStopSignal(int) { stop_signal = 1; }

double Percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const size_t i =
      std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(i), v.end());
  return v[i];
}

int Run() {
  const std::vector<std::string> targets =
      absl::StrSplit(absl::GetFlag(FLAGS_targets), ',', absl::SkipWhitespace());
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  const double duration = absl::GetFlag(FLAGS_duration_s);
  const double warmup = absl::GetFlag(FLAGS_warmup_s);
  const int64_t requests = absl::GetFlag(FLAGS_requests);
  const std::string dist = absl::GetFlag(FLAGS_dist);
  if (targets.empty() || concurrency < 1 || requests < 0 ||
      (requests == 0 && (duration <= 0 || warmup < 0)) || absl::GetFlag(FLAGS_keys) < 1 ||
      absl::GetFlag(FLAGS_timeout_ms) <= 0 ||
      (dist != "uniform" && dist != "zipf" && dist != "sequential")) {
    std::fprintf(stderr,
                 "lcache-bench: need -targets, -concurrency >= 1, -requests >= 0 (or, without "
                 "it, -duration-s > 0 and -warmup-s >= 0), -keys >= 1, -timeout-ms > 0, -dist "
                 "uniform|zipf|sequential\n");
    return 2;
  }
  GrpcLoadClient::Options options;
  if (const std::string ca = absl::GetFlag(FLAGS_tls_ca); !ca.empty()) {
    options.tls = GrpcLoadClient::Options::Tls{.ca_file = ca == "system" ? "" : ca,
                                               .cert_file = absl::GetFlag(FLAGS_tls_cert),
                                               .key_file = absl::GetFlag(FLAGS_tls_key)};
  } else if (!absl::GetFlag(FLAGS_tls_cert).empty() || !absl::GetFlag(FLAGS_tls_key).empty()) {
    std::fprintf(stderr,
                 "lcache-bench: -tls-cert and -tls-key need -tls-ca (a CA file, or system)\n");
    return 2;
  }
  options.path = kGetMethod;
  options.timeout = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  if (absl::GetFlag(FLAGS_forwarded)) options.metadata.emplace_back(kForwardedMetadataKey, "1");
  Bench bench;
  absl::StatusOr<std::unique_ptr<GrpcLoadClient>> client = GrpcLoadClient::Create(
      targets, options,
      [&bench](GrpcLoadClient::Call* call, const absl::Status& status, std::string_view message,
               absl::Duration latency) { bench.Completed(call, status, message, latency); });
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  const bool progress = isatty(STDERR_FILENO) && !absl::GetFlag(FLAGS_json);
  using Clock = GrpcLoadClient::Clock;
  const auto seconds_from_now = [](double s) {
    return Clock::now() + std::chrono::nanoseconds(static_cast<int64_t>(s * 1e9));
  };

  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  // OpenSSL writes with write(2): a node that closed must be an error, not
  // the end of the program.
  std::signal(SIGPIPE, SIG_IGN);
  // Poll returns only at its `until`, so the loops below poll in slices of
  // 10 ms: a stop signal, or the last of -requests calls, ends the window
  // within a slice (100 wake-ups a second cost nothing next to the calls).
  const auto slice = [&](Clock::time_point until) {
    return std::min(until, Clock::now() + std::chrono::milliseconds(10));
  };
  bench.Start(client->get(), concurrency, requests);
  if (requests == 0) {
    for (const Clock::time_point end = seconds_from_now(warmup);
         Clock::now() < end && !stop_signal;) {
      (*client)->Poll(slice(end));
    }
  }
  bench.BeginMeasuring();
  const Cpu cpu0 = CpuSeconds();
  const Clock::time_point t0 = Clock::now();
  // With -requests, the deadline of each call ends the run; no end of its own.
  const Clock::time_point end =
      requests > 0 ? Clock::time_point::max() : seconds_from_now(duration);
  const int64_t completed0 = bench.completed_;
  for (Clock::time_point next = t0 + std::chrono::seconds(1);
       !stop_signal &&
       (requests > 0 ? bench.completed_ - completed0 < requests : Clock::now() < end);) {
    (*client)->Poll(slice(std::min(end, next)));
    if (Clock::now() >= next) {
      next += std::chrono::seconds(1);
      if (progress) {
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        std::fprintf(stderr, "\r%5.1f s  %9.0f calls/s  %zu in flight ", s,
                     static_cast<double>(bench.completed_ - completed0) / s,
                     (*client)->in_flight());
      }
    }
  }
  bench.EndMeasuring();
  const Cpu cpu1 = CpuSeconds();
  const absl::Duration elapsed = absl::FromChrono(Clock::now() - t0);
  if (progress) std::fprintf(stderr, "\n");
  // Let the calls in flight finish (within their deadline) before closing.
  const Clock::time_point drain_until = seconds_from_now(absl::GetFlag(FLAGS_timeout_ms) / 1e3);
  while ((*client)->in_flight() > 0 && Clock::now() < drain_until) {
    (*client)->Poll(std::min(drain_until, seconds_from_now(0.005)));
  }
  client->reset();

  const double seconds = absl::ToDoubleSeconds(elapsed);
  const int64_t errors = [&] {
    int64_t n = 0;
    for (const auto& [code, count] : bench.errors_) n += count;
    return n;
  }();
  const int64_t calls = bench.ok_ + errors;
  const double user = cpu1.user - cpu0.user, system = cpu1.system - cpu0.system;
  const auto per_call = [&](double cpu) {
    return calls ? cpu * 1e6 / static_cast<double>(calls) : 0.0;
  };
  nlohmann::json out = {
      {"targets", targets},
      {"concurrency", concurrency},
      {"seconds", seconds},
      {"keys", absl::GetFlag(FLAGS_keys)},
      {"dist", dist},
      {"requests", requests},
      {"stopped_by_signal", stop_signal != 0},
      {"ok", bench.ok_},
      {"errors", errors},
      {"errors_by_code", bench.errors_},
      {"error_messages", bench.error_messages_},
      {"qps", static_cast<double>(bench.ok_) / seconds},
      {"client_cpu_us_per_call", per_call(user + system)},
      {"client_user_us_per_call", per_call(user)},
      {"client_system_us_per_call", per_call(system)},
      {"client_cpu_pct", (user + system) / seconds * 100},
  };
  std::vector<uint32_t>& lat = bench.latencies_us_;
  const double p50 = Percentile(lat, 50), p90 = Percentile(lat, 90), p99 = Percentile(lat, 99),
               p999 = Percentile(lat, 99.9);
  const double max = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  out["latency_us"] = {{"p50", p50}, {"p90", p90}, {"p99", p99}, {"p99.9", p999}, {"max", max}};
  if (absl::GetFlag(FLAGS_json)) {
    // Replaced, not thrown on: a server's message may cut a UTF-8 sequence.
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%.0f calls/s over %.1f s (%lld ok, %lld errors)\n", out["qps"].get<double>(),
                seconds, static_cast<long long>(bench.ok_), static_cast<long long>(errors));
    std::printf("latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", p50, p90, p99,
                p999, max);
    std::printf("client CPU: %.2f us per call (user %.2f, kernel %.2f; %.0f%% of a core)\n",
                out["client_cpu_us_per_call"].get<double>(), per_call(user), per_call(system),
                out["client_cpu_pct"].get<double>());
    for (const auto& [code, count] : bench.errors_) {
      std::printf("errors %s: %lld\n", code.c_str(), static_cast<long long>(count));
      if (auto it = bench.error_messages_.find(code); it != bench.error_messages_.end()) {
        std::printf("  the first: %s\n", it->second.c_str());
      }
    }
  }
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lcache::tools

int main(int argc, char** argv) {
  lcache::tools::ParseGoStyleCommandLine(
      argc, argv,
      "lcache-bench: closed-loop load on lcache nodes over the peer protocol.\n"
      "  lcache-bench -targets 127.0.0.1:9001 -concurrency 32 -duration-s 10 -keys 1000\n"
      "  lcache-bench -targets 127.0.0.1:9001 -keys 20000 -dist sequential -requests 20000\n"
      "  lcache-bench -targets 10.0.0.1:9000 -tls-ca ca.pem [-tls-cert c.pem -tls-key c.key]\n"
      "The second sends exactly 20000 calls (k0 .. k19999, each once), all measured:\n"
      "-requests ignores -duration-s and -warmup-s. Sequential key i of pass p goes\n"
      "to target (i + p) mod targets. SIGINT/SIGTERM end the run early, and the\n"
      "results are printed as usual. -tls-ca speaks TLS (-tls-cert/-tls-key: mutual).\n"
      "Exit status: 0 no errors, 1 some calls failed, 2 bad flags.",
      "lcache_bench.cc");
  return lcache::tools::Run();
}
