#!/usr/bin/python3
"""The hot cache's effect: the share of client requests that cross the network.

Three lcache-nodes on one ring, lcache-bench sending Zipf-distributed keys to
all three (each request to a random node). A request for a key another node
owns crosses the network (a peer call) unless the asked node answers it from
its hot cache. For each configuration (no hot cache; groupcache's random 1 in
10; ours, promotion by frequency) the script starts a fresh cluster, warms it
up with one bench run, then measures a second: the peer calls the nodes made
(lcache_peer_loads_total + lcache_peer_errors_total from /metrics, before and
after) divided by the calls the bench completed, beside QPS and latency.
RUNS runs per configuration, interleaved; medians and min-max printed.

  bench/net_hot_cache.py                      # 3 runs, 1M keys, Zipf 0.99, 10 s
  RUNS=1 DURATION=5 bench/net_hot_cache.py

Environment: RUNS (3), DURATION (10), WARMUP (10), KEYS (1000000), ZIPF (0.99),
CONC (32), VALUE_BYTES (100), CACHE_MB (64: the hot cache gets 8).
Needs build/bin/lcache-node and build/bin/lcache-bench (release preset).
"""

import os
import pathlib
import statistics
import sys
import tempfile

from local_cluster import http_get, run_bench, start_nodes, stop_nodes

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "build" / "bin"
RUNS = int(os.environ.get("RUNS", 3))
DURATION = float(os.environ.get("DURATION", 10))
WARMUP = float(os.environ.get("WARMUP", 10))
KEYS = int(os.environ.get("KEYS", 1_000_000))
ZIPF = float(os.environ.get("ZIPF", 0.99))
CONC = int(os.environ.get("CONC", 32))
VALUE_BYTES = int(os.environ.get("VALUE_BYTES", 100))
CACHE_MB = int(os.environ.get("CACHE_MB", 64))

CONFIGS = {
    "no hot cache": ["-hot-cache-mb", "0"],
    "random 1 in 10 (groupcache)": ["-hot-promote", "random"],
    "frequency (default)": ["-hot-promote", "frequency"],
}


def metric(hport, name):
    text = http_get(hport, "/metrics", timeout=10)
    for line in text.splitlines():
        if line.startswith(f'{name}{{group="scores"}} '):
            return float(line.split()[-1])
    raise KeyError(name)


def peer_calls(hports):
    return sum(metric(h, "lcache_peer_loads_total") + metric(h, "lcache_peer_errors_total")
               for h in hports)


def bench(targets, seconds, seed):
    return run_bench(BIN, targets, seconds, seed, CONC, KEYS, ZIPF)


def one_run(config, run, logdir):
    nodes = start_nodes(BIN, 3, logdir, ["-source", f"synthetic:{VALUE_BYTES}",
                                         "-cache-mb", str(CACHE_MB), *CONFIGS[config]])
    peers, hports = nodes.peers, nodes.hports
    try:
        bench(peers, WARMUP, seed=1000 + run)
        before = peer_calls(hports)
        out = bench(peers, DURATION, seed=2000 + run)
        crossed = peer_calls(hports) - before
        calls = out["ok"] + out["errors"]
        hot_items = sum(metric(h, "lcache_hot_items") for h in hports)
        if out["errors"]:
            print(f"    errors: {out['errors_by_code']}", flush=True)
        return {"crossed": crossed / calls, "qps": out["qps"], "p50": out["latency_us"]["p50"],
                "p99": out["latency_us"]["p99"], "errors": out["errors"], "hot_items": hot_items}
    finally:
        stop_nodes(nodes)


def main():
    for tool in ("lcache-node", "lcache-bench"):
        if not (BIN / tool).is_file():
            sys.exit(f"missing {BIN / tool} (cmake --preset release && cmake --build --preset release)")
    logdir = tempfile.mkdtemp(prefix="lcache-hot-cache.")
    print(f"3 nodes, -cache-mb {CACHE_MB}, {VALUE_BYTES} B values; lcache-bench over all three, "
          f"{CONC} in flight, Zipf {ZIPF} over {KEYS} keys; warm-up {WARMUP:g} s, measured "
          f"{DURATION:g} s; {RUNS} runs per configuration, interleaved; logs in {logdir}")
    results = {c: [] for c in CONFIGS}
    for run in range(RUNS):
        for config in CONFIGS:
            r = one_run(config, run, logdir)
            results[config].append(r)
            print(f"  run {run + 1} {config}: crossed {r['crossed']:.1%}, {r['qps']:.0f} calls/s, "
                  f"p50 {r['p50']:.0f} us, p99 {r['p99']:.0f} us, hot entries {r['hot_items']:.0f}, "
                  f"errors {r['errors']}", flush=True)
    print("\n| configuration | requests that crossed the network | calls/s | p50 µs | p99 µs |")
    print("|---|---|---|---|---|")
    for config, rs in results.items():
        def fig(key, fmt):
            vals = [r[key] for r in rs]
            return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"
        print(f"| {config} | {fig('crossed', lambda v: f'{v:.1%}')} | "
              f"{fig('qps', lambda v: f'{v / 1000:.1f}k')} | {fig('p50', lambda v: f'{v:.0f}')} | "
              f"{fig('p99', lambda v: f'{v:.0f}')} |")


if __name__ == "__main__":
    main()
