"""Local lcache-node clusters for the network benchmarks (bench/net_*.py).

    from local_cluster import free_port, start_nodes, stop_nodes
    nodes = start_nodes(bin_dir, 3, logdir, ["-source", "synthetic:100"], core=0)
    ... nodes.peers, nodes.ports, nodes.hports, nodes.procs ...
    out = run_bench(bin_dir, nodes.peers, 10, seed=1, concurrency=32, keys=1000, core=1)
    used = node_cpu_seconds(nodes)  # utime + stime of all nodes so far
    stop_nodes(nodes)
    total = metric_total(hport, "lcache_local_loads_total")  # summed over groups
    m = metrics(hport)  # {name: value} of every metric, summed over groups
    wait_until(lambda: ..., 10, "what")  # polls; SystemExit naming `what` after 10 s

Every node gets the same -peers list (all of them, in port order), its own
-http admin listener, a log file node-PORT.log in `logdir`, and optionally a
CPU (taskset -c CORE). start_nodes returns once every node's /readyz is 200
(exits with the log directory after 10 s)."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


_given_ports = set()


def free_port():
    """A free loopback port, never one handed out before by this process
    (the kernel may pick a just-closed port again)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


def http_get(hport, path, timeout=5):
    """The body of GET http://127.0.0.1:HPORT/PATH (no proxy)."""
    return _no_proxy.open(f"http://127.0.0.1:{hport}{path}", timeout=timeout).read().decode()


def metrics(hport):
    """The node's /metrics as {name: value}, each metric summed over its
    label sets (histograms' _bucket, _sum, _count lines by those names)."""
    out = {}
    for line in http_get(hport, "/metrics").splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.split("{", 1)[0].split(" ", 1)[0], float(line.rsplit(None, 1)[1])
        out[name] = out.get(name, 0) + value
    return {k: int(v) if v.is_integer() else v for k, v in out.items()}


def metric_total(hport, name):
    """The sum of metric `name` over its label sets (0 when absent)."""
    return metrics(hport).get(name, 0)


def wait_until(condition, timeout, what, interval=0.02):
    """Polls `condition` until it returns a true value (returned); exits
    naming `what` after `timeout` s (`what` may be a function returning the
    text, called then: say what was seen)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            sys.exit(f"timed out after {timeout} s waiting for {text}")
        time.sleep(interval)


@dataclass
class Nodes:
    peers: str
    ports: list
    hports: list
    procs: list


def start_nodes(bin_dir, n, logdir, args, core=None):
    ports = [free_port() for _ in range(n)]
    hports = [free_port() for _ in range(n)]
    peers = ",".join(f"127.0.0.1:{p}" for p in ports)
    pin = ["taskset", "-c", str(core)] if core is not None else []
    procs = []
    for port, hport in zip(ports, hports):
        log = open(pathlib.Path(logdir) / f"node-{port}.log", "wb")
        procs.append(subprocess.Popen(
            [*pin, str(pathlib.Path(bin_dir) / "lcache-node"), "-addr", f"127.0.0.1:{port}",
             "-peers", peers, "-http", f"127.0.0.1:{hport}", *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    nodes = Nodes(peers, ports, hports, procs)
    deadline = time.monotonic() + 10
    for hport in hports:
        while True:
            try:
                if _no_proxy.open(f"http://127.0.0.1:{hport}/readyz", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                stop_nodes(nodes)
                sys.exit(f"node with -http {hport} not ready; logs in {logdir}")
            time.sleep(0.05)
    return nodes


def node_cpu_seconds(nodes):
    """utime + stime of every node process so far, from /proc/PID/stat."""
    total = 0
    for p in nodes.procs:
        fields = pathlib.Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_bench(bin_dir, targets, seconds, seed, concurrency, keys, zipf=0.99, core=None):
    """One lcache-bench run (Zipf keys k0..k{keys-1}, no warm-up of its own),
    optionally pinned to `core`; its -json result. A run that counted errors
    (exit 1) is reported, not fatal; one that printed no result exits."""
    pin = ["taskset", "-c", str(core)] if core is not None else []
    r = subprocess.run([*pin, str(pathlib.Path(bin_dir) / "lcache-bench"), "-json",
                        "-targets", targets, "-concurrency", str(concurrency),
                        "-duration-s", str(seconds), "-warmup-s", "0", "-keys", str(keys),
                        "-dist", "zipf", "-zipf-s", str(zipf), "-seed", str(seed)],
                       capture_output=True, text=True, timeout=seconds + 60)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        sys.exit(f"lcache-bench failed ({r.returncode}): {r.stderr}{r.stdout}")


def stop_nodes(nodes):
    for p in nodes.procs:
        try:
            p.terminate()
        except ProcessLookupError:
            pass
    for p in nodes.procs:
        p.wait(30)
