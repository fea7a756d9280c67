#!/usr/bin/python3
"""What an HTTP origin costs a node: misses (each one origin round trip)
and hits (which must cost what they cost with any other source).

  bench/net_origin.py                       # 50k misses, then the same keys as hits
  bench/net_origin.py --keys 20000 --json

One lcache-node (-hot-cache-mb 0, -cache-mb 1024) pinned to core 0, in front
of nginx (Debian's; a temp config: `return 200` with a 100-byte body,
keep-alive, one worker) pinned to core 1 with lcache-bench. Runs, in order:

  origin     h2load --h1 straight at nginx, 1 connection: the origin's own
             round trip, the floor of a miss
  miss-c1    lcache-bench -dist sequential over k0..k{K-1}, 1 call in
             flight: every call a miss, so latency = node + one origin trip
  miss       the same over fresh keys, 16 in flight: misses/s, node CPU/miss
  hit        the keys of `miss` again, 16 in flight, for --hit-s seconds
             (Zipf 0.99): every call a hit
  *-synth    the same three against a node with -source synthetic:100 (the
             same value size, no origin): what the origin adds

Reported per run: calls/s, p50/p99 (us), node CPU us per call (utime+stime
from /proc over the run), and for misses the origin requests per miss from
lcache_origin_requests_total. Medians over --repeat runs of each.
"""

import argparse
import json
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from local_cluster import (free_port, metric_total, node_cpu_seconds,  # noqa: E402
                           start_nodes, stop_nodes)

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location /items/ {{ default_type text/plain; return 200 "{body}"; }}
  }}
}}
"""


def bench(bin_dir, target, args, core=1):
    r = subprocess.run(["taskset", "-c", str(core), str(bin_dir / "lcache-bench"), "-json",
                        "-targets", target, *args], capture_output=True, text=True, timeout=600)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        sys.exit(f"lcache-bench failed ({r.returncode}): {r.stderr}")


def measured(bin_dir, nodes, args):
    cpu0 = node_cpu_seconds(nodes)
    out = bench(bin_dir, nodes.peers, args)
    cpu = node_cpu_seconds(nodes) - cpu0
    calls = out["ok"] + out["errors"]
    return {"qps": out["qps"], "p50_us": out["latency_us"]["p50"],
            "p99_us": out["latency_us"]["p99"], "errors": out["errors"],
            "node_cpu_us_per_call": cpu * 1e6 / max(calls, 1), "calls": calls}


def h2load_origin(port, n):
    r = subprocess.run(["taskset", "-c", "1", "h2load", "--h1", "-n", str(n), "-c", "1",
                        f"http://127.0.0.1:{port}/items/x"], capture_output=True, text=True,
                       timeout=120)
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", r.stdout)
    if not m:
        sys.exit(f"h2load failed: {r.stdout}{r.stderr}")

    def us(text):
        v = float(re.match(r"[\d.]+", text).group())
        return v * 1000 if text.endswith("ms") else v * 1e6 if text.endswith("s") and not \
            text.endswith("us") else v
    return {"mean_us": us(m.group(3))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=str(pathlib.Path(__file__).resolve().parent.parent /
                                         "build" / "bin"))
    ap.add_argument("--keys", type=int, default=50_000)
    ap.add_argument("--hit-s", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    bin_dir = pathlib.Path(args.bin).resolve()
    if shutil.which("nginx") is None or shutil.which("h2load") is None:
        sys.exit("net_origin: needs nginx (nginx-light) and h2load (nghttp2-client)")

    work = pathlib.Path(tempfile.mkdtemp(prefix="lcache-net-origin-"))
    port = free_port()
    (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=port, body="v" * 100))
    nginx = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", str(work / "nginx.conf"),
                              "-p", str(work)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)
    runs = {k: [] for k in ("origin", "miss-c1", "miss", "hit", "miss-c1-synth", "miss-synth",
                            "hit-synth")}
    try:
        time.sleep(0.3)
        common = ["-hot-cache-mb", "0", "-cache-mb", "1024"]
        for rep in range(args.repeat):
            runs["origin"].append(h2load_origin(port, 20_000))
            source = ["-source", f"http://127.0.0.1:{port}/items/{{key}}"]
            nodes = start_nodes(bin_dir, 1, work, common + source, core=0)
            r = measured(bin_dir, nodes, ["-dist", "sequential", "-keys", "2000",
                                          "-requests", "2000", "-concurrency", "1"])
            runs["miss-c1"].append(r)
            stop_nodes(nodes)
            nodes = start_nodes(bin_dir, 1, work, common + source, core=0)
            hport = nodes.hports[0]
            r = measured(bin_dir, nodes, ["-dist", "sequential", "-keys", str(args.keys),
                                          "-requests", str(args.keys), "-concurrency", "16"])
            r["origin_requests_per_miss"] = (
                metric_total(hport, "lcache_origin_requests_total") / r["calls"])
            runs["miss"].append(r)
            runs["hit"].append(measured(bin_dir, nodes, [
                "-dist", "zipf", "-keys", str(args.keys), "-duration-s", str(args.hit_s),
                "-warmup-s", "1", "-concurrency", "16"]))
            stop_nodes(nodes)
            synthetic = ["-source", "synthetic:100"]
            nodes = start_nodes(bin_dir, 1, work, common + synthetic, core=0)
            runs["miss-c1-synth"].append(measured(bin_dir, nodes, [
                "-dist", "sequential", "-keys", "2000", "-requests", "2000", "-concurrency", "1"]))
            stop_nodes(nodes)
            nodes = start_nodes(bin_dir, 1, work, common + synthetic, core=0)
            runs["miss-synth"].append(measured(bin_dir, nodes, [
                "-dist", "sequential", "-keys", str(args.keys), "-requests", str(args.keys),
                "-concurrency", "16"]))
            runs["hit-synth"].append(measured(bin_dir, nodes, [
                "-dist", "zipf", "-keys", str(args.keys), "-duration-s", str(args.hit_s),
                "-warmup-s", "1", "-concurrency", "16"]))
            stop_nodes(nodes)
    finally:
        nginx.terminate()
        nginx.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    summary = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
               for name, rs in runs.items()}
    summary["hit_cpu_ratio_origin_vs_synthetic"] = (
        summary["hit"]["node_cpu_us_per_call"] / summary["hit-synth"]["node_cpu_us_per_call"])
    if args.json:
        print(json.dumps({"runs": runs, "median": summary}, indent=1))
        return
    print(f"origin round trip (h2load, 1 conn): mean {summary['origin']['mean_us']:.0f} us")
    for name in ("miss-c1", "miss-c1-synth", "miss", "miss-synth", "hit", "hit-synth"):
        s = summary[name]
        extra = (f"  origin requests/miss {s['origin_requests_per_miss']:.3f}"
                 if "origin_requests_per_miss" in s else "")
        print(f"{name:13} {s['qps']:9.0f} calls/s  p50 {s['p50_us']:6.0f} us  p99 "
              f"{s['p99_us']:6.0f} us  node CPU {s['node_cpu_us_per_call']:5.1f} us/call  "
              f"errors {s['errors']:.0f}{extra}")
    print(f"hit CPU, http origin / synthetic: {summary['hit_cpu_ratio_origin_vs_synthetic']:.2f}")
    print(f"miss CPU, http origin - synthetic: "
          f"{summary['miss']['node_cpu_us_per_call'] - summary['miss-synth']['node_cpu_us_per_call']:.1f}"
          " us per miss")


if __name__ == "__main__":
    main()
