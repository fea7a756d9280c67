#!/usr/bin/python3
"""How cold a cluster goes through ring changes: origin loads (getter calls)
while a node joins a warm 3-node cluster, while all three restart one by one,
and after one is SIGKILLed; with the client errors and p99 meanwhile.

  bench/net_warm_cluster.py --scenario all
  bench/net_warm_cluster.py --node-bin /work/base17 --scenario kill --json
  bench/net_warm_cluster.py --node-args "-warmup 60s -handoff-mb 64"

Each scenario on a fresh cluster: its own etcd (Debian's, free ports, a temp
dir) and three lcache-node processes (-etcd, -etcd-lease-ttl-s 3, -source
synthetic:100, -cache-mb 256, then --node-args) on fixed ports
(--base-port: the ring, so which keys move, is the same in every run;
it is set by the addresses alone), pinned to core 0; the
lcache-bench runs and this script on core 1; etcd unpinned (its lease
keep-alives must not queue behind the nodes' load). "Ready" means: every
live node's /readyz is 200 and every live node's /peers lists exactly the
live nodes, polled against a deadline (--ready-timeout-s).

Origin loads are counted, not timed: lcache_local_loads_total +
lcache_local_load_errs_total (the getter calls) summed over the live nodes,
plus, for every process stopped, its last reading: read just before its
signal and, after a SIGTERM, again while it drains until its admin listener
closes. The loads a node makes after that last reading (calls in flight
during its grace) are not seen; with keys all warm before each event they
are few or none. A SIGKILLed node's count is its reading just before.
The nodes' sources log each load ("[getter] load key=..."): the script
counts those lines in all logs too and calls a mismatch with the metrics a
FINDING (log_loads in the JSON; a SIGKILL could lose unflushed lines).

  1. Warm: lcache-bench -dist sequential -requests K over all nodes: every
     key k0..k{K-1} asked once, so loads must be exactly K (else a FINDING).
  2. The event, under background load: lcache-bench Zipf 0.99 over the same
     K keys, 16 calls in flight, -timeout-ms 2000, run until SIGINT.
     join:    the load on the 3 old nodes; start a 4th; wait until all 4
              see 4; load --settle-s more.
     rolling: for each node in turn: the load on the other two (a client of
              the node being restarted fails by construction; the issue's
              "0 failed client requests" is about clients of the others),
              SIGTERM, wait for exit, restart on the same ports, wait until
              it is ready and all see 3; then the load on all 3 for
              --settle-s. Four load runs: errors summed, p99 the worst.
     kill:    the load on the 2 survivors; SIGKILL the third; wait until
              both see 2 (lease TTL 3 s); load --settle-s more.
  3. Second pass: sequential passes over the K keys, one per live node,
     each node asked for every key (lcache-bench sends key i of pass p to
     node (i + p) mod n). One pass would leave the count to chance: a key
     that moved is a hit on its old owner (still in its store) and on nodes
     with a hot copy, so whether its new owner loads it would depend on
     which node the pass (and the Zipf load before it) asked. Asked through
     every node, the new owner itself among them, every key ends up at its
     owner, and for a join (every node sees the new ring at once) event +
     second pass is exactly the keys the new node owns, run after run.
     Reported: loads in the event window, in the second pass, and both (the
     figure to compare against a baseline), peer-call errors (each a local
     load), the background load's calls, errors (by code) and p99, the
     convergence time and wall time.

Everything started (nodes, lcache-bench, etcd) runs in its own process
group and is killed, and the temp dir removed (--keep keeps it), on any
exit: failure (the nodes' last log lines printed first), Ctrl-C, SIGTERM.
"""

import argparse
import json
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from local_cluster import free_port, http_get, metrics, wait_until  # noqa: E402

NODE_CORE, CLIENT_CORE = 0, 1
CONCURRENCY = 16
TIMEOUT_MS = 2000
# Counters kept across restarts: the getter calls (succeeded, failed), and
# the peer calls that failed (each then loaded locally), which tell where
# extra loads came from.
COUNTERS = {"loads": ("lcache_local_loads_total", "lcache_local_load_errs_total"),
            "peer_errors": ("lcache_peer_errors_total",)}

_children = []  # every process started, killed at exit whatever happened


def spawn(cmd, log_path, core=None):
    pin = ["taskset", "-c", str(core)] if core is not None else []
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([*pin, *map(str, cmd)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _children.append(proc)
    return proc


def kill_all():
    for proc in _children:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # setsid: the pid is the group's
            except OSError:
                pass
    for proc in _children:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


class Etcd:
    """One etcd member on 127.0.0.1 (as tests/etcd_test.py starts it)."""

    def __init__(self, binary, workdir):
        self.binary, self.workdir = binary, pathlib.Path(workdir)
        self.client_port, self.peer_port = free_port(), free_port()
        self.endpoint = f"127.0.0.1:{self.client_port}"

    def start(self, timeout):
        url, peer = f"http://{self.endpoint}", f"http://127.0.0.1:{self.peer_port}"
        self.proc = spawn([self.binary, "--name", "bench", "--data-dir", self.workdir / "etcd-data",
                           "--listen-client-urls", url, "--advertise-client-urls", url,
                           "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                           "--initial-cluster", f"bench={peer}", "--log-level", "warn",
                           "--logger", "zap"], self.workdir / "etcd.log")
        wait_until(self._healthy, timeout, f"etcd on {self.endpoint} (log {self.workdir})")

    def _healthy(self):
        if self.proc.poll() is not None:
            sys.exit(f"etcd exited {self.proc.returncode}; log in {self.workdir}")
        try:
            return json.loads(http_get(self.client_port, "/health", timeout=1))["health"] == "true"
        except (OSError, ValueError, KeyError):
            return False


def ports_of(cfg, index):
    """Node `index`'s peer and admin ports: fixed ones from --base-port (so
    that every run has the same ring), or free ones."""
    if cfg.base_port == 0:
        return free_port(), free_port()
    port, hport = cfg.base_port + index, cfg.base_port + 10 + index
    for p in (port, hport):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the node's listeners
            try:
                s.bind(("127.0.0.1", p))
            except OSError as e:
                sys.exit(f"port {p} (--base-port {cfg.base_port}) is taken: {e}")
    return port, hport


class Node:
    """One lcache-node on fixed ports (a restart keeps them)."""

    def __init__(self, cfg, etcd, workdir, index):
        self.cfg, self.etcd = cfg, etcd
        self.port, self.hport = ports_of(cfg, index)
        self.addr = f"127.0.0.1:{self.port}"
        self.log_path = pathlib.Path(workdir) / f"node-{self.port}.log"
        self.proc = None
        self.seen = dict.fromkeys(COUNTERS, 0)  # this process's last reading

    def start(self):
        self.seen = dict.fromkeys(COUNTERS, 0)
        self.proc = spawn([pathlib.Path(self.cfg.node_bin) / "lcache-node",
                           "-addr", self.addr, "-http", f"127.0.0.1:{self.hport}",
                           "-etcd", self.etcd.endpoint, "-etcd-lease-ttl-s", "3",
                           "-source", "synthetic:100", "-cache-mb", "256", "-log-loads", "all",
                           *shlex.split(self.cfg.node_args)], self.log_path, NODE_CORE)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def counters(self):
        """COUNTERS so far (this process); raises OSError when unreachable."""
        m = metrics(self.hport)
        for name, parts in COUNTERS.items():
            self.seen[name] = max(self.seen[name], sum(m.get(p, 0) for p in parts))
        return self.seen

    def ready(self):
        try:
            return http_get(self.hport, "/readyz", timeout=1).strip() == "ready"
        except OSError:
            return False

    def view(self):
        try:
            return sorted(json.loads(http_get(self.hport, "/peers", timeout=1))["peers"])
        except (OSError, ValueError, KeyError):
            return None

    def stop(self, sig):
        """Signals the node and waits for its exit; returns its COUNTERS (its
        last reading: just before the signal, then while it drains)."""
        self.counters()
        self.proc.send_signal(sig)
        while self.proc.poll() is None:
            try:
                self.counters()
            except OSError:  # the admin listener has closed
                pass
            time.sleep(0.02)
        if self.proc.returncode not in (0, -signal.SIGKILL):
            print(f"!! {self.addr} exited {self.proc.returncode} after {sig!r}", flush=True)
        return self.seen


class Cluster:
    def __init__(self, cfg, workdir):
        self.cfg, self.workdir = cfg, workdir
        self.etcd = Etcd(cfg.etcd_bin, workdir)
        self.nodes = []
        self.retired = dict.fromkeys(COUNTERS, 0)  # of the processes already stopped

    def add_node(self):
        node = Node(self.cfg, self.etcd, self.workdir, len(self.nodes))
        self.nodes.append(node)
        node.start()
        return node

    def live(self):
        return [n for n in self.nodes if n.alive()]

    def logged_loads(self):
        """"[getter] load" lines in every node's log (every process on its ports)."""
        return sum(n.log_path.read_bytes().count(b"[getter] load key=") for n in self.nodes)

    def stop(self, node, sig):
        for name, n in node.stop(sig).items():
            self.retired[name] += n

    def counters(self):
        """COUNTERS cluster-wide so far: {"loads": origin loads, "peer_errors": ...}."""
        total = dict(self.retired)
        for node in self.live():
            for name, n in node.counters().items():
                total[name] += n
        return total

    def wait_converged(self, nodes):
        """Until every one of `nodes` is ready and sees exactly `nodes`; the seconds it took."""
        t0 = time.monotonic()
        want = sorted(n.addr for n in nodes)

        def done():
            for n in nodes:
                if not n.alive():
                    sys.exit(f"{n.addr} exited {n.proc.returncode} (its log's last lines above)")
            return all(n.ready() and n.view() == want for n in nodes)

        def seen():
            return "; ".join(f"{n.addr} ready={n.ready()} sees {n.view()}" for n in nodes) + \
                   f" (want {want})"
        wait_until(done, self.cfg.ready_timeout_s, seen)
        return time.monotonic() - t0


def bench_cmd(cfg, nodes, *args):
    return [pathlib.Path(cfg.bench_bin) / "lcache-bench", "-json",
            "-targets", ",".join(n.addr for n in nodes), "-concurrency", CONCURRENCY,
            "-timeout-ms", TIMEOUT_MS, "-keys", cfg.keys, *args]


def sequential_pass(cfg, cluster, every_node):
    """Every key once, spread over the live nodes, or (`every_node`) each
    live node asked for every key: (bench result, the COUNTERS' increase)."""
    before = cluster.counters()
    nodes = cluster.live()
    requests = cfg.keys * (len(nodes) if every_node else 1)
    cmd = bench_cmd(cfg, nodes, "-dist", "sequential", "-requests", requests)
    r = subprocess.run(["taskset", "-c", str(CLIENT_CORE), *map(str, cmd)],
                       capture_output=True, text=True, timeout=300)
    try:
        out = json.loads(r.stdout)
    except json.JSONDecodeError:
        sys.exit(f"lcache-bench failed ({r.returncode}): {r.stderr}{r.stdout}")
    return out, delta(cluster.counters(), before)


def delta(after, before):
    return {name: after[name] - before[name] for name in COUNTERS}


class BackgroundLoad:
    """lcache-bench, Zipf 0.99 over the keys, until stop() (SIGINT: it prints its result)."""

    def __init__(self, cfg, cluster, nodes, seed):
        self.path = pathlib.Path(cluster.workdir) / f"bench-{seed}.json"

        def served():
            return sum(metrics(n.hport).get("lcache_server_requests_total", 0) for n in nodes)
        before = served()
        self.proc = spawn(bench_cmd(cfg, nodes, "-dist", "zipf", "-zipf-s", "0.99",
                                    "-duration-s", "86400", "-warmup-s", "0", "-seed", seed),
                          self.path, CLIENT_CORE)
        # Its calls arriving: the load is on, and its SIGINT handler set.
        wait_until(lambda: self.proc.poll() is not None or served() > before, 10,
                   "the background load's first calls")
        if self.proc.poll() is not None:
            sys.exit(f"background lcache-bench exited {self.proc.returncode}: "
                     f"{self.path.read_text()}")

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        try:
            return json.loads(self.path.read_text().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            sys.exit(f"background lcache-bench exited {self.proc.returncode}: "
                     f"{self.path.read_text()}")


def settle(seconds):
    time.sleep(seconds)  # load kept on for a while: a measured span, not a synchronisation


def join(cfg, cluster):
    load = BackgroundLoad(cfg, cluster, cluster.live(), seed=11)
    cluster.add_node()
    converge = cluster.wait_converged(cluster.nodes)
    settle(cfg.settle_s)
    return [load.stop()], {"converge_s": converge}


def rolling(cfg, cluster):
    runs, steps = [], []
    for i, node in enumerate(list(cluster.nodes)):
        others = [n for n in cluster.nodes if n is not node]
        load = BackgroundLoad(cfg, cluster, others, seed=21 + i)
        t0 = time.monotonic()
        cluster.stop(node, signal.SIGTERM)
        down = time.monotonic() - t0
        node.start()
        converge = cluster.wait_converged(cluster.nodes)
        runs.append(load.stop())
        steps.append({"node": node.addr, "exit_s": down, "back_s": time.monotonic() - t0 - down,
                      "converge_s": converge})
    load = BackgroundLoad(cfg, cluster, cluster.nodes, seed=29)
    settle(cfg.settle_s)
    runs.append(load.stop())
    return runs, {"converge_s": sum(s["exit_s"] + s["back_s"] for s in steps), "steps": steps}


def kill(cfg, cluster):
    victim = cluster.nodes[-1]
    survivors = cluster.nodes[:-1]
    load = BackgroundLoad(cfg, cluster, survivors, seed=31)
    t0 = time.monotonic()
    cluster.stop(victim, signal.SIGKILL)
    cluster.wait_converged(survivors)
    converge = time.monotonic() - t0
    settle(cfg.settle_s)
    return [load.stop()], {"converge_s": converge}


SCENARIOS = {"join": join, "rolling": rolling, "kill": kill}


def merge(runs):
    errors_by_code = {}
    for r in runs:
        for code, n in r["errors_by_code"].items():
            errors_by_code[code] = errors_by_code.get(code, 0) + n
    return {"ok": sum(r["ok"] for r in runs), "errors": sum(r["errors"] for r in runs),
            "errors_by_code": errors_by_code,
            "p99_us": max(r["latency_us"]["p99"] for r in runs),
            "max_us": max(r["latency_us"]["max"] for r in runs),
            "seconds": sum(r["seconds"] for r in runs),
            "runs": [{k: r[k] for k in ("targets", "seconds", "ok", "errors", "errors_by_code",
                                        "latency_us")} for r in runs]}


def run_scenario(cfg, name):
    workdir = tempfile.mkdtemp(prefix=f"lcache-warm-{name}.")
    cluster = Cluster(cfg, workdir)
    ok = interrupted = False
    try:
        t_start = time.monotonic()
        cluster.etcd.start(cfg.ready_timeout_s)
        for _ in range(3):
            cluster.add_node()
        cluster.wait_converged(cluster.nodes)
        warm, warm_n = sequential_pass(cfg, cluster, every_node=False)
        if warm_n["loads"] != cfg.keys or warm["errors"]:
            print(f"!! FINDING ({name}): the warm pass over {cfg.keys} keys made "
                  f"{warm_n['loads']} origin loads ({warm_n['peer_errors']} peer errors) and "
                  f"{warm['errors']} client errors {warm['errors_by_code']}", flush=True)
        before = cluster.counters()
        t0 = time.monotonic()
        runs, info = SCENARIOS[name](cfg, cluster)
        event_s = time.monotonic() - t0
        event_n = delta(cluster.counters(), before)
        second, second_n = sequential_pass(cfg, cluster, every_node=True)
        if second["errors"]:
            print(f"!! FINDING ({name}): the second pass had {second['errors']} errors "
                  f"{second['errors_by_code']}", flush=True)
        kill_all()  # every log complete
        log_loads = cluster.logged_loads()
        if log_loads != warm_n["loads"] + event_n["loads"] + second_n["loads"]:
            print(f"!! FINDING ({name}): the logs show {log_loads} loads, the metrics "
                  f"{warm_n['loads'] + event_n['loads'] + second_n['loads']}", flush=True)
        ok = True
        return {"scenario": name, "keys": cfg.keys, "node_args": cfg.node_args,
                "log_loads": log_loads,
                "warm_loads": warm_n["loads"], "warm_errors": warm["errors"],
                "loads": event_n["loads"] + second_n["loads"],
                "event_loads": event_n["loads"], "second_pass_loads": second_n["loads"],
                "peer_errors": event_n["peer_errors"] + second_n["peer_errors"],
                "event_peer_errors": event_n["peer_errors"],
                "second_pass_peer_errors": second_n["peer_errors"],
                "second_pass_errors": second["errors"],
                "background": merge(runs), "event_s": event_s, **info,
                "wall_s": time.monotonic() - t_start}
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        kill_all()
        _children.clear()
        if not ok and not interrupted:
            for n in cluster.nodes:
                lines = n.log_path.read_text(errors="replace").splitlines()
                tail = [line for line in lines if "[getter]" not in line][-10:]
                print(f"-- {n.log_path} (last lines but loads)\n" + "\n".join(tail),
                      file=sys.stderr)
        if cfg.keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node-bin", default=str(root / "build/bin"), help="where lcache-node is")
    helper = pathlib.Path("/work/helper-build/bin")
    ap.add_argument("--bench-bin", default=str(helper if helper.is_dir() else root / "build/bin"),
                    help="where lcache-bench is (one with -dist sequential and -requests)")
    ap.add_argument("--etcd-bin", default="/usr/bin/etcd")
    ap.add_argument("--keys", type=int, default=20000)
    ap.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    ap.add_argument("--node-args", default="", help="extra lcache-node flags, for every node")
    ap.add_argument("--base-port", type=int, default=21000,
                    help="nodes on 127.0.0.1:BASE+i, admin on BASE+10+i: the same addresses, "
                    "so the same ring and the same keys moving, in every run (0: free ports, "
                    "a different ring each run)")
    ap.add_argument("--settle-s", type=float, default=5,
                    help="background load kept on after the cluster has converged")
    ap.add_argument("--ready-timeout-s", type=float, default=90,
                    help="deadline for readiness and member views (and etcd's health)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (logs)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    # --node-args "-warmup-s 60": argparse would take the value for a flag.
    argv = sys.argv[1:]
    for i, a in enumerate(argv[:-1]):
        if a == "--node-args":
            argv[i:i + 2] = [f"--node-args={argv[i + 1]}"]
            break
    cfg = ap.parse_args(argv)
    for binary in (pathlib.Path(cfg.node_bin) / "lcache-node",
                   pathlib.Path(cfg.bench_bin) / "lcache-bench", pathlib.Path(cfg.etcd_bin)):
        if not os.access(binary, os.X_OK):
            sys.exit(f"no {binary}")
    # SIGTERM as Ctrl-C (and Ctrl-C even where a shell started us with SIGINT
    # ignored): the finally blocks kill what was started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.sched_setaffinity(0, {CLIENT_CORE})

    names = list(SCENARIOS) if cfg.scenario == "all" else [cfg.scenario]
    results = {}
    try:
        for name in names:
            if not cfg.json:
                print(f"{name}: 3 nodes ({cfg.node_bin}) {cfg.node_args}, {cfg.keys} keys ...",
                      flush=True)
            results[name] = run_scenario(cfg, name)
    finally:
        kill_all()
    if cfg.json:
        print(json.dumps({"keys": cfg.keys, "node_bin": cfg.node_bin, "node_args": cfg.node_args,
                          "scenarios": results}))
        return
    print("\n| scenario | warm loads | event loads | 2nd-pass loads | loads (event + 2nd) | "
          "peer errors | bg calls ok | bg errors | bg p99 ms | bg max ms | converge s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        bg = r["background"]
        errors = f"{bg['errors']}" + (f" {bg['errors_by_code']}" if bg["errors"] else "")
        print(f"| {name} | {r['warm_loads']} | {r['event_loads']} | {r['second_pass_loads']} | "
              f"{r['loads']} | {r['peer_errors']} | {bg['ok']} | {errors} | "
              f"{bg['p99_us'] / 1000:.1f} | {bg['max_us'] / 1000:.1f} | {r['converge_s']:.1f} | "
              f"{r['wall_s']:.1f} |")
    for name, r in results.items():
        for step in r.get("steps", []):
            print(f"  {name} {step['node']}: exited in {step['exit_s']:.2f} s, back and "
                  f"converged in {step['back_s']:.2f} s")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
