#!/usr/bin/python3
"""What a cluster costs against one node: node CPU per request on a spread workload.

lcache-bench sends Zipf-distributed keys (1M keys, Zipf 0.99, 100-byte
synthetic values) to every node of a cluster (each call to a node picked at
random), so (N-1)/N of the misses of the hot cache are forwarded to their
owner. The same workload is sent to one node alone. Every node is pinned to
core 0, lcache-bench to core 1. Per configuration: a fresh cluster, a
WARMUP-second bench run (not measured), then the measured DURATION-second
run; the nodes' utime+stime (/proc/PID/stat) before and after it, summed and
divided by the calls completed, is the node CPU per request. RUNS runs,
interleaved; medians and min-max printed, with the ratio cluster / one node.

A third configuration, "unconnected", runs N nodes that do not know each
other (each its own one-node cluster) with the same placement and the same
spread of requests: what N processes sharing core 0 cost without any peer
traffic. The cluster against it is what the peer layer adds.

  bench/net_cluster.py                                  # build/bin, 3 runs
  BUILDS=/work/baseline/build/bin,build/bin bench/net_cluster.py   # two builds side by side
  NODE_ARGS="-hot-cache-mb 0" RUNS=1 bench/net_cluster.py

Environment: BUILDS (build/bin; comma-separated bin directories, compared in
the same run), UNCONNECTED (1; 0 skips that configuration), RUNS (3),
DURATION (10), WARMUP (10), KEYS (1000000), ZIPF
(0.99), CONC (32), VALUE_BYTES (100), NODES (3), NODE_ARGS (extra node flags).
Needs lcache-node and lcache-bench in each build directory, taskset.
"""

import os
import pathlib
import statistics
import sys
import tempfile

from local_cluster import Nodes, metrics, node_cpu_seconds, run_bench, start_nodes, stop_nodes

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILDS = [pathlib.Path(b) if pathlib.Path(b).is_absolute() else ROOT / b
          for b in os.environ.get("BUILDS", "build/bin").split(",")]
RUNS = int(os.environ.get("RUNS", 3))
DURATION = float(os.environ.get("DURATION", 10))
WARMUP = float(os.environ.get("WARMUP", 10))
KEYS = int(os.environ.get("KEYS", 1_000_000))
ZIPF = float(os.environ.get("ZIPF", 0.99))
CONC = int(os.environ.get("CONC", 32))
VALUE_BYTES = int(os.environ.get("VALUE_BYTES", 100))
NODES = int(os.environ.get("NODES", 3))
NODE_ARGS = os.environ.get("NODE_ARGS", "").split()
UNCONNECTED = os.environ.get("UNCONNECTED", "1") != "0"


def bench(binary, targets, seconds, seed):
    return run_bench(binary, targets, seconds, seed, CONC, KEYS, ZIPF, core=1)


COUNTED = ("lcache_gets_total", "lcache_hot_hits_total", "lcache_peer_loads_total",
           "lcache_local_loads_total", "lcache_hot_items")


def counted(nodes):
    """COUNTED metrics summed over the nodes."""
    total = dict.fromkeys(COUNTED, 0)
    for hport in nodes.hports:
        m = metrics(hport)
        for name in COUNTED:
            total[name] += m.get(name, 0)
    return total


def start(binary, n, kind, logdir):
    args = ["-source", f"synthetic:{VALUE_BYTES}", *NODE_ARGS]
    if kind == "cluster":
        return start_nodes(binary, n, logdir, args, core=0)
    alone = []
    try:
        for _ in range(n):
            alone.append(start_nodes(binary, 1, logdir, args, core=0))
    except SystemExit:  # one did not start: stop the others before leaving
        for a in alone:
            stop_nodes(a)
        raise
    return Nodes(",".join(a.peers for a in alone), [p for a in alone for p in a.ports],
                 [h for a in alone for h in a.hports], [p for a in alone for p in a.procs])


def one_run(binary, n, kind, run, logdir):
    nodes = start(binary, n, kind, logdir)
    peers = nodes.peers
    try:
        bench(binary, peers, WARMUP, seed=1000 + run)
        counts_before = counted(nodes)
        before = node_cpu_seconds(nodes)
        out = bench(binary, peers, DURATION, seed=2000 + run)
        used = node_cpu_seconds(nodes) - before
        counts = counted(nodes)
        calls = out["ok"] + out["errors"]
        gets = max(1, counts["lcache_gets_total"] - counts_before["lcache_gets_total"])
        share = {name: (counts[name] - counts_before[name]) / gets
                 for name in ("lcache_hot_hits_total", "lcache_peer_loads_total",
                              "lcache_local_loads_total")}
        return {"cpu_us": used * 1e6 / calls, "qps": out["qps"],
                "p99": out["latency_us"]["p99"], "errors": out["errors"],
                "hot_hits": share["lcache_hot_hits_total"],
                "forwarded": share["lcache_peer_loads_total"],
                "loads": share["lcache_local_loads_total"], "hot_items": counts["lcache_hot_items"]}
    finally:
        stop_nodes(nodes)


def fig(rs, key, fmt):
    vals = [r[key] for r in rs]
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"


def main():
    for b in BUILDS:
        for tool in ("lcache-node", "lcache-bench"):
            if not (b / tool).is_file():
                sys.exit(f"missing {b / tool}")
    logdir = tempfile.mkdtemp(prefix="lcache-net-cluster.")
    print(f"{NODES} nodes vs 1, all on core 0, lcache-bench on core 1: {CONC} in flight, Zipf "
          f"{ZIPF} over {KEYS} keys, {VALUE_BYTES} B values, node flags {NODE_ARGS or 'default'}; "
          f"warm-up {WARMUP:g} s, measured {DURATION:g} s; {RUNS} runs, interleaved; "
          f"logs in {logdir}", flush=True)
    kinds = [(NODES, "cluster"), (1, "cluster")] + ([(NODES, "unconnected")] if UNCONNECTED else [])
    configs = [(b, n, kind) for b in BUILDS for n, kind in kinds]
    results = {c: [] for c in configs}
    for run in range(RUNS):
        for binary, n, kind in configs:
            r = one_run(binary, n, kind, run, logdir)
            results[(binary, n, kind)].append(r)
            print(f"  run {run + 1} {binary} x{n} {kind}: {r['cpu_us']:.2f} us node CPU/request, "
                  f"{r['qps']:.0f} calls/s, p99 {r['p99']:.0f} us, errors {r['errors']}; "
                  f"per Get: hot hits {r['hot_hits']:.3f}, forwarded {r['forwarded']:.3f}, "
                  f"loads {r['loads']:.3f}; hot items {r['hot_items']}",
                  flush=True)
    print("\n| build | nodes | node CPU µs / request | calls/s | p99 µs | errors | CPU vs 1 node "
          "| vs unconnected |")
    print("|---|---|---|---|---|---|---|---|")
    median_cpu = {c: statistics.median(r["cpu_us"] for r in rs) for c, rs in results.items()}
    for binary, n, kind in configs:
        rs = results[(binary, n, kind)]
        ratio = median_cpu[(binary, n, kind)] / median_cpu[(binary, 1, "cluster")]
        alone = median_cpu.get((binary, n, "unconnected"))
        versus = f"{median_cpu[(binary, n, kind)] / alone:.2f}x" if alone and n > 1 else "—"
        print(f"| {binary} | {n} {kind} | {fig(rs, 'cpu_us', lambda v: f'{v:.2f}')} | "
              f"{fig(rs, 'qps', lambda v: f'{v / 1000:.1f}k')} | "
              f"{fig(rs, 'p99', lambda v: f'{v:.0f}')} | {sum(r['errors'] for r in rs)} | "
              f"{ratio:.2f}x | {versus} |")


if __name__ == "__main__":
    main()
