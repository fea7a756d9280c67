#!/usr/bin/python3
"""Set and Remove in a 3-node cluster: their latency, and what a steady 1% of
mutations costs Get throughput.

Latency: three nodes pinned to core 0 (hot cache on), this script on core 1
as the client (Debian's python3-grpcio, one call at a time). Per transport,
N Sets then N Removes of random keys through random nodes, and N Gets that
are local hits on the node called, the last as the floor this client adds to
any call. p50 and p99 of each, in µs, as the client saw them.

Mix: lcache-bench on core 1 sends Gets (Zipf 0.99 over KEYS keys, 100-byte
synthetic values, CONC in flight, spread over the nodes: after the warm-up
nearly all hits, many of them hot copies); beside it this script sends Sets
and Removes (alternately) of Zipf-drawn keys, so the hottest keys change
most, at a steady 1% of the Get rate of the run without them (measured
first, same cluster). A Remove makes the next Get of its key load again on
the owner; either drops every hot copy of the key. Each configuration on a
fresh cluster: a WARMUP-second bench run, then the measured DURATION-second
run; node CPU per Get from /proc/PID/stat. RUNS runs, interleaved; medians
and min-max.

  bench/net_mutations.py
  RUNS=1 N=500 TRANSPORTS=lean bench/net_mutations.py

Environment: BIN (build/bin), TRANSPORTS (lean,grpc), N (2000), RUNS (3),
DURATION (10), WARMUP (8), KEYS (10000), CONC (32), PCT (1), PARTS
(latency,mix), MUTATORS (4: threads sharing the mutation rate, so that the
Python client keeps the pace), MUTATE (hot: Zipf-drawn keys the Gets read;
cold: keys no Get reads, the mutations' own cost alone).
"""

import base64
import bisect
import json
import os
import pathlib
import random
import statistics
import tempfile
import threading
import time

import grpc

from local_cluster import node_cpu_seconds, run_bench, start_nodes, stop_nodes

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(os.environ.get("BIN", ROOT / "build/bin"))
TRANSPORTS = os.environ.get("TRANSPORTS", "lean,grpc").split(",")
N = int(os.environ.get("N", 2000))
RUNS = int(os.environ.get("RUNS", 3))
DURATION = float(os.environ.get("DURATION", 10))
WARMUP = float(os.environ.get("WARMUP", 8))
KEYS = int(os.environ.get("KEYS", 10_000))
CONC = int(os.environ.get("CONC", 32))
PCT = float(os.environ.get("PCT", 1))
PARTS = os.environ.get("PARTS", "latency,mix").split(",")
MUTATORS = int(os.environ.get("MUTATORS", 4))
MUTATE = os.environ.get("MUTATE", "hot")
GROUP = "scores"


class Client:
    def __init__(self, ports):
        self.channels = [grpc.insecure_channel(f"127.0.0.1:{p}",
                                               options=[("grpc.enable_http_proxy", 0)])
                         for p in ports]
        self.stubs = {m: [c.unary_unary(f"/lcache.LCache/{m}") for c in self.channels]
                      for m in ("Get", "Set", "Remove")}

    def call(self, method, node, body):
        resp = json.loads(self.stubs[method][node](json.dumps(body).encode(), timeout=5))
        if "err" in resp:
            raise RuntimeError(f"{method}: {resp['err']}")
        return resp

    def close(self):
        for c in self.channels:
            c.close()


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def latency(transport, logdir):
    nodes = start_nodes(BIN, 3, logdir, ["-source", "synthetic:100", "-transport", transport],
                        core=0)
    client = Client(nodes.ports)
    rng = random.Random(1)
    value = base64.b64encode(b"v" * 100).decode()
    out = {}
    try:
        for op in ("Set", "Remove", "Get hit"):
            times = []
            for i in range(N):
                node = rng.randrange(3)
                key = f"m{rng.randrange(10_000)}"
                if op == "Set":
                    body = {"group": GROUP, "key": key, "value": value}
                elif op == "Remove":
                    body = {"group": GROUP, "key": key}
                else:  # the same key, asked twice of the same node: a hit the second time
                    body = {"group": GROUP, "key": f"hit{node}"}
                    client.call("Get", node, body)
                method = op.split()[0]
                t0 = time.perf_counter()
                client.call(method, node, body)
                times.append((time.perf_counter() - t0) * 1e6)
            out[op] = (pct(times, 50), pct(times, 99))
    finally:
        client.close()
        stop_nodes(nodes)
    return out


class ZipfKeys:
    def __init__(self, n, s=0.99, seed=7):
        total, self.cdf = 0.0, []
        for i in range(n):
            total += 1.0 / (i + 1) ** s
            self.cdf.append(total)
        self.total = total
        self.rng = random.Random(seed)

    def next(self):
        return f"k{bisect.bisect_left(self.cdf, self.rng.random() * self.total)}"


def mutator(client, rate, stop, counts, seed):
    """Sets and Removes, alternately, at `rate` per second, paced against the
    clock, until `stop`."""
    keys = ZipfKeys(KEYS, seed=seed)
    value = base64.b64encode(b"w" * 100).decode()
    rng = random.Random(seed)
    lock = counts["lock"]
    t0 = time.monotonic()
    i = 0
    while not stop.is_set():
        due = t0 + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)  # pacing a steady rate, not a synchronisation
        key = keys.next() if MUTATE == "hot" else f"cold{seed}-{i % 5000}"
        body = {"group": GROUP, "key": key}
        if i % 2 == 0:
            body["value"] = value
        try:
            client.call("Set" if i % 2 == 0 else "Remove", rng.randrange(3), body)
            with lock:
                counts["ok"] += 1
        except (grpc.RpcError, RuntimeError):
            with lock:
                counts["errors"] += 1
        i += 1


def bench(targets, seconds, seed):
    return run_bench(BIN, targets, seconds, seed, CONC, KEYS, core=1)


def mix_run(transport, rate, run, logdir):
    nodes = start_nodes(BIN, 3, logdir, ["-source", "synthetic:100", "-transport", transport],
                        core=0)
    client = Client(nodes.ports)
    stop, counts = threading.Event(), {"ok": 0, "errors": 0, "lock": threading.Lock()}
    try:
        bench(nodes.peers, WARMUP, seed=100 + run)
        threads = [threading.Thread(target=mutator, args=(client, rate / MUTATORS, stop, counts, i))
                   for i in range(MUTATORS if rate > 0 else 0)]
        for t in threads:
            t.start()
        before = node_cpu_seconds(nodes)
        out = bench(nodes.peers, DURATION, seed=200 + run)
        used = node_cpu_seconds(nodes) - before
        stop.set()
        for t in threads:
            t.join()
        calls = out["ok"] + out["errors"]
        return {"qps": out["qps"], "cpu_us": used * 1e6 / calls,
                "p99": out["latency_us"]["p99"], "errors": out["errors"],
                "sets": counts["ok"] / DURATION, "set_errors": counts["errors"]}
    finally:
        client.close()
        stop_nodes(nodes)


def fig(rs, key, fmt):
    vals = [r[key] for r in rs]
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"


def main():
    os.sched_setaffinity(0, {1})
    logdir = tempfile.mkdtemp(prefix="lcache-net-mutations.")
    print(f"3 nodes on core 0, clients on core 1; logs in {logdir}", flush=True)
    if "latency" in PARTS:
        print("\n| transport | op | p50 µs | p99 µs |\n|---|---|---|---|")
        for transport in TRANSPORTS:
            for op, (p50, p99) in latency(transport, logdir).items():
                print(f"| {transport} | {op} | {p50:.0f} | {p99:.0f} |", flush=True)

    for transport in TRANSPORTS if "mix" in PARTS else []:
        base = mix_run(transport, 0, 0, logdir)
        rate = base["qps"] * PCT / 100
        print(f"\n{transport}: Gets alone {base['qps']:.0f}/s; mutations at {rate:.0f}/s ({PCT:g}%)",
              flush=True)
        results = {"none": [], "sets": []}
        for run in range(RUNS):
            for name, r in (("none", 0), ("sets", rate)):
                res = mix_run(transport, r, run, logdir)
                results[name].append(res)
                print(f"  run {run + 1} {name}: {res}", flush=True)
        print(f"\n| {transport} | Gets/s | node CPU µs / Get | Get p99 µs | Get errors | mutations/s | mutation errors |")
        print("|---|---|---|---|---|---|---|")
        for name, rs in results.items():
            print(f"| {'Gets only' if name == 'none' else f'+ {PCT:g}% Set/Remove'} | "
                  f"{fig(rs, 'qps', lambda v: f'{v / 1000:.1f}k')} | "
                  f"{fig(rs, 'cpu_us', lambda v: f'{v:.2f}')} | "
                  f"{fig(rs, 'p99', lambda v: f'{v:.0f}')} | {sum(r['errors'] for r in rs)} | "
                  f"{fig(rs, 'sets', lambda v: f'{v:.0f}')} | {sum(r['set_errors'] for r in rs)} |",
                  flush=True)


if __name__ == "__main__":
    main()
