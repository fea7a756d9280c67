#!/usr/bin/python3
"""What replication costs a healthy cluster: memory, CPU per miss, CPU per hit.

  bench/net_replica_cost.py                   # -replicas 1 and 2, three rounds
  bench/net_replica_cost.py --keys 200000 --value-bytes 1000 --rounds 1

Each round starts, for each R in (1, 2), a fresh cluster of three lcache-node
processes with static peers (-source synthetic:V, -cache-mb 512,
-hot-cache-mb 0, -log-loads none, -replicas R), all pinned to core 0, and
lcache-bench on core 1:

  1. Misses: lcache-bench -dist sequential -requests K over all nodes (every
     key loaded once, by its owner; with R = 2 each load also pushes a
     Replicate). CPU per miss = the nodes' utime + stime during the run
     (/proc/PID/stat) / K.
  2. With R = 2, wait (deadline) until the holders kept K replicas.
  3. Memory: the nodes' VmRSS summed, and lcache_bytes / lcache_replica_bytes
     (len(key) + len(value) in the stores) summed.
  4. Hits: lcache-bench Zipf 0.99 over the same K keys for --hit-s seconds,
     32 in flight; CPU per request = the nodes' CPU / calls answered.

R = 1 and R = 2 alternate within a round, so both see the same machine.
Reported: per R, the median over rounds and every round's figure.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from local_cluster import (metrics, node_cpu_seconds, run_bench, start_nodes,  # noqa: E402
                           stop_nodes, wait_until)

NODE_CORE, CLIENT_CORE = 0, 1


def rss_bytes(nodes):
    total = 0
    for p in nodes.procs:
        for line in pathlib.Path(f"/proc/{p.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def summed(nodes, name):
    return sum(metrics(h).get(name, 0) for h in nodes.hports)


def one(cfg, replicas, logdir):
    nodes = start_nodes(cfg.node_bin, 3, logdir,
                        ["-source", f"synthetic:{cfg.value_bytes}", "-cache-mb", "512",
                         "-hot-cache-mb", "0", "-log-loads", "none", "-replicas", str(replicas)],
                        core=NODE_CORE)
    try:
        cpu0 = node_cpu_seconds(nodes)
        r = subprocess.run(["taskset", "-c", str(CLIENT_CORE),
                            str(pathlib.Path(cfg.bench_bin) / "lcache-bench"), "-json",
                            "-targets", nodes.peers, "-concurrency", "32", "-keys", str(cfg.keys),
                            "-dist", "sequential", "-requests", str(cfg.keys)],
                           capture_output=True, text=True, timeout=600)
        warm = json.loads(r.stdout)
        if warm.get("errors", 0):
            sys.exit(f"warm-up errors: {warm}")
        if replicas > 1:
            wait_until(lambda: summed(nodes, "lcache_replicas_kept_total") >= cfg.keys, 30,
                       "every replica kept")
        miss_cpu = node_cpu_seconds(nodes) - cpu0
        loads = summed(nodes, "lcache_local_loads_total")
        if loads != cfg.keys:
            sys.exit(f"{loads} loads for {cfg.keys} keys")
        out = {
            "replicas": replicas,
            "miss_cpu_us": miss_cpu / cfg.keys * 1e6,
            "rss_mib": rss_bytes(nodes) / 2**20,
            "store_mib": summed(nodes, "lcache_bytes") / 2**20,
            "replica_mib": summed(nodes, "lcache_replica_bytes") / 2**20,
            "replicas_kept": summed(nodes, "lcache_replicas_kept_total"),
        }
        cpu0 = node_cpu_seconds(nodes)
        hits = run_bench(cfg.bench_bin, nodes.peers, cfg.hit_s, seed=1, concurrency=32,
                         keys=cfg.keys, core=CLIENT_CORE)
        out["hit_cpu_us"] = (node_cpu_seconds(nodes) - cpu0) / hits["ok"] * 1e6
        out["hit_rps"] = hits["ok"] / cfg.hit_s
        if summed(nodes, "lcache_local_loads_total") != cfg.keys:
            sys.exit("the hit phase loaded")
        return out
    finally:
        stop_nodes(nodes)


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node-bin", default=str(root / "build/bin"))
    ap.add_argument("--bench-bin", default=str(root / "build/bin"))
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--value-bytes", type=int, default=1000)
    ap.add_argument("--hit-s", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    cfg = ap.parse_args()
    runs = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="lcache-replica-cost-") as logdir:
        for _ in range(cfg.rounds):
            for replicas in (1, 2):
                runs[replicas].append(one(cfg, replicas, logdir))
    if cfg.json:
        print(json.dumps(runs))
        return
    fields = ["miss_cpu_us", "hit_cpu_us", "hit_rps", "rss_mib", "store_mib", "replica_mib"]
    print(f"{cfg.keys} keys of {cfg.value_bytes} B, 3 nodes; median (all rounds)")
    print("| R | " + " | ".join(fields) + " |")
    print("|---|" + "---:|" * len(fields))
    for replicas, rs in runs.items():
        cells = []
        for f in fields:
            values = [r[f] for r in rs]
            cells.append(f"{statistics.median(values):.1f} ("
                         + ", ".join(f"{v:.1f}" for v in values) + ")")
        print(f"| {replicas} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
