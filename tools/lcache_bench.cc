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
// Everything runs on one event-loop thread (src/h2_client.h: nghttp2 on
// libevent, the lean transport's client), so the generator costs little CPU
// per request; it reports its own (getrusage over the measured window), so
// a reader can check it stayed far below the server's.
//
// Output: QPS, latency p50/p90/p99/p99.9/max over the calls that completed
// in the measured window, errors by status; -json for scripts. A progress
// line on stderr when it is a terminal.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "go_flags.h"
#include "h2_client.h"
#include "json_codec.h"
#include "lcache/grpc_peer.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, targets, "127.0.0.1:9000", "comma-separated nodes (host:port)");
ABSL_FLAG(std::string, group, "scores", "the group");
ABSL_FLAG(int32_t, concurrency, 32, "calls in flight");
ABSL_FLAG(double, duration_s, 10, "measured seconds");
ABSL_FLAG(double, warmup_s, 2, "seconds of load before measuring");
ABSL_FLAG(int64_t, keys, 1000, "key space: k0 .. k{keys-1}");
ABSL_FLAG(std::string, dist, "uniform", "key distribution: uniform or zipf");
ABSL_FLAG(double, zipf_s, 0.99, "Zipf exponent (with -dist zipf)");
ABSL_FLAG(uint64_t, seed, 1, "random seed");
ABSL_FLAG(int64_t, timeout_ms, 2000, "deadline of each call");
ABSL_FLAG(bool, forwarded, false, "mark requests as forwarded (served by the node, never routed)");
ABSL_FLAG(bool, json, false, "print the results as one JSON object");

namespace lcache::tools {
namespace {

// Draws key indexes: uniform, or Zipf by inverse CDF (a table of n doubles).
class KeyChooser {
 public:
  KeyChooser(int64_t n, bool zipf, double s, uint64_t seed) : n_(n), random_(seed) {
    if (!zipf) return;
    cdf_.resize(static_cast<size_t>(n));
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i + 1), s);
      cdf_[static_cast<size_t>(i)] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  int64_t Next() {
    if (cdf_.empty()) return std::uniform_int_distribution<int64_t>(0, n_ - 1)(random_);
    const double u = std::uniform_real_distribution<double>(0, 1)(random_);
    return std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin();
  }

 private:
  const int64_t n_;
  std::mt19937_64 random_;
  std::vector<double> cdf_;
};

// The requests for keys k0..k{n-1}, as EncodeGetRequest writes them, into one
// buffer: no string per call. A key is "k" and digits, which JSON writes as
// they are, so each request is the one for "k" with the digits spliced in
// after its "k". Checked against EncodeGetRequest at start; if that ever
// writes something else, every request is encoded by it.
class RequestWriter {
 public:
  explicit RequestWriter(std::string group) : group_(std::move(group)) {
    const std::string k = internal::EncodeGetRequest(group_, "k");
    const size_t at = k.rfind("\"k\"");
    if (at == std::string::npos) return;
    prefix_ = k.substr(0, at + 2);
    suffix_ = k.substr(at + 2);
    for (int64_t key : {0LL, 7LL, 1234567890LL}) {
      if (std::string(Write(key)) != internal::EncodeGetRequest(group_, absl::StrCat("k", key))) {
        prefix_.clear();
        return;
      }
    }
  }
  // Valid until the next Write.
  std::string_view Write(int64_t key) {
    if (prefix_.empty()) {
      buffer_ = internal::EncodeGetRequest(group_, absl::StrCat("k", key));
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
  std::string prefix_;  // empty: EncodeGetRequest for each
  std::string suffix_;
  std::string buffer_;
};

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The closed loop. Everything but the atomics is touched by the client's
// loop thread only.
class Bench {
 public:
  Bench(internal::H2Client* client, std::vector<std::shared_ptr<internal::H2Client::Connection>> c)
      : client_(client),
        connections_(std::move(c)),
        keys_(absl::GetFlag(FLAGS_keys), absl::GetFlag(FLAGS_dist) == "zipf",
              absl::GetFlag(FLAGS_zipf_s), absl::GetFlag(FLAGS_seed)),
        requests_(absl::GetFlag(FLAGS_group)) {
    options_.path = kGetMethod;
    options_.timeout = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
    if (absl::GetFlag(FLAGS_forwarded)) options_.metadata.emplace_back(kForwardedMetadataKey, "1");
  }

  // Loop thread: starts the chains.
  void Start(int concurrency) {
    chains_.resize(static_cast<size_t>(concurrency));
    for (size_t i = 0; i < chains_.size(); ++i) {
      chains_[i].target = i % connections_.size();
      Issue(&chains_[i]);
    }
  }
  // Loop thread: from now on, completions are counted.
  void BeginMeasuring() {
    latencies_us_.clear();
    errors_.clear();
    ok_ = 0;
    measuring_ = true;
  }
  // Loop thread: stop counting and stop issuing.
  void EndMeasuring() {
    measuring_ = false;
    stopping_ = true;
  }

  std::atomic<int64_t> completed{0};  // all completions, for the progress line
  std::atomic<int> in_flight{0};

  // Results (read after the loop thread is done with them).
  std::vector<uint32_t> latencies_us_;
  std::map<std::string, int64_t> errors_;
  int64_t ok_ = 0;

 private:
  // One of the `concurrency` chains of calls: each call's completion
  // issues the chain's next call.
  struct Chain {
    size_t target = 0;
    absl::Time start;
  };

  void Issue(Chain* chain) {
    if (stopping_) return;
    const int64_t key = keys_.Next();
    chain->start = absl::Now();
    in_flight.fetch_add(1, std::memory_order_relaxed);
    // The client copies the request, and a callback of two pointers
    // (which std::function keeps inline): the client allocates nothing per
    // call.
    client_->Call(connections_[chain->target], options_, requests_.Write(key),
                  [this, chain](absl::Status status, std::string_view) {
                    Completed(status, absl::Now() - chain->start);
                    in_flight.fetch_sub(1, std::memory_order_relaxed);
                    if (status.ok()) {
                      Issue(chain);
                    } else {
                      // A failure may come back at once (a node that
                      // refuses connections): issue the next call from
                      // the loop, not from inside this callback, or the
                      // calls would recurse.
                      client_->RunInLoop([this, chain] { Issue(chain); });
                    }
                  });
  }

  void Completed(const absl::Status& status, absl::Duration latency) {
    completed.fetch_add(1, std::memory_order_relaxed);
    if (!measuring_) return;
    if (status.ok()) {
      ++ok_;
      latencies_us_.push_back(
          static_cast<uint32_t>(std::min<int64_t>(absl::ToInt64Microseconds(latency), UINT32_MAX)));
    } else {
      ++errors_[std::string(absl::StatusCodeToString(status.code()))];
    }
  }

  internal::H2Client* const client_;
  const std::vector<std::shared_ptr<internal::H2Client::Connection>> connections_;
  KeyChooser keys_;
  internal::H2Client::CallOptions options_;
  RequestWriter requests_;
  std::vector<Chain> chains_;
  bool measuring_ = false;
  bool stopping_ = false;
};

// Runs `task` on the client's loop thread and waits for it.
void RunOnLoop(internal::H2Client& client, std::function<void()> task) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  client.RunInLoop([&] {
    task();
    std::lock_guard lock(mu);
    done = true;
    cv.notify_one();
  });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
}

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
  if (targets.empty() || concurrency < 1 || duration <= 0 || warmup < 0 ||
      absl::GetFlag(FLAGS_keys) < 1 || absl::GetFlag(FLAGS_timeout_ms) <= 0 ||
      (absl::GetFlag(FLAGS_dist) != "uniform" && absl::GetFlag(FLAGS_dist) != "zipf")) {
    std::fprintf(stderr,
                 "lcache-bench: need -targets, -concurrency >= 1, -duration-s > 0, -warmup-s >= "
                 "0, -keys >= 1, -timeout-ms > 0, -dist uniform|zipf\n");
    return 2;
  }
  absl::StatusOr<std::unique_ptr<internal::H2Client>> client = internal::H2Client::Create();
  if (!client.ok()) {
    std::fprintf(stderr, "lcache-bench: %s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  std::vector<std::shared_ptr<internal::H2Client::Connection>> connections;
  for (const std::string& t : targets) connections.push_back((*client)->Open(t));
  Bench bench(client->get(), connections);
  const bool progress = isatty(STDERR_FILENO) && !absl::GetFlag(FLAGS_json);

  RunOnLoop(**client, [&] { bench.Start(concurrency); });
  absl::SleepFor(absl::Seconds(warmup));
  double cpu0 = 0;
  absl::Time t0;
  RunOnLoop(**client, [&] {
    bench.BeginMeasuring();
    cpu0 = CpuSeconds();
    t0 = absl::Now();
  });
  const int64_t completed0 = bench.completed.load();
  for (absl::Time end = t0 + absl::Seconds(duration); absl::Now() < end;) {
    absl::SleepFor(std::min(absl::Seconds(1), end - absl::Now()));
    if (progress) {
      const double s = absl::ToDoubleSeconds(absl::Now() - t0);
      std::fprintf(stderr, "\r%5.1f s  %9.0f calls/s  %d in flight ", s,
                   static_cast<double>(bench.completed.load() - completed0) / s,
                   bench.in_flight.load());
    }
  }
  double cpu1 = 0;
  absl::Duration elapsed;
  RunOnLoop(**client, [&] {
    bench.EndMeasuring();
    cpu1 = CpuSeconds();
    elapsed = absl::Now() - t0;
  });
  if (progress) std::fprintf(stderr, "\n");
  // Let the calls in flight finish (within their deadline) before closing.
  const absl::Time drain_until = absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  while (bench.in_flight.load() > 0 && absl::Now() < drain_until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  client->reset();  // joins the loop thread: the results are ours now

  const double seconds = absl::ToDoubleSeconds(elapsed);
  const int64_t errors = [&] {
    int64_t n = 0;
    for (const auto& [code, count] : bench.errors_) n += count;
    return n;
  }();
  const int64_t calls = bench.ok_ + errors;
  nlohmann::json out = {
      {"targets", targets},
      {"concurrency", concurrency},
      {"seconds", seconds},
      {"keys", absl::GetFlag(FLAGS_keys)},
      {"dist", absl::GetFlag(FLAGS_dist)},
      {"ok", bench.ok_},
      {"errors", errors},
      {"errors_by_code", bench.errors_},
      {"qps", static_cast<double>(bench.ok_) / seconds},
      {"client_cpu_us_per_call", calls ? (cpu1 - cpu0) * 1e6 / static_cast<double>(calls) : 0},
      {"client_cpu_pct", (cpu1 - cpu0) / seconds * 100},
  };
  std::vector<uint32_t>& lat = bench.latencies_us_;
  const double p50 = Percentile(lat, 50), p90 = Percentile(lat, 90), p99 = Percentile(lat, 99),
               p999 = Percentile(lat, 99.9);
  const double max = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  out["latency_us"] = {{"p50", p50}, {"p90", p90}, {"p99", p99}, {"p99.9", p999}, {"max", max}};
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("%.0f calls/s over %.1f s (%lld ok, %lld errors)\n", out["qps"].get<double>(),
                seconds, static_cast<long long>(bench.ok_), static_cast<long long>(errors));
    std::printf("latency us: p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", p50, p90, p99,
                p999, max);
    std::printf("client CPU: %.2f us per call (%.0f%% of a core)\n",
                out["client_cpu_us_per_call"].get<double>(), out["client_cpu_pct"].get<double>());
    for (const auto& [code, count] : bench.errors_) {
      std::printf("errors %s: %lld\n", code.c_str(), static_cast<long long>(count));
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
      "Exit status: 0 no errors, 1 some calls failed, 2 bad flags.",
      "lcache_bench.cc");
  return lcache::tools::Run();
}
