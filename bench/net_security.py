#!/usr/bin/python3
"""The security review's attacks, full size, against one release lcache-node
(lean transport, default limits), with the figures docs/SECURITY.md quotes.

  bench/net_security.py [--bin build/bin] [--only body,idle,fds,slowloris,pool,logs]

- body: 6 connections x 1000 streams, each sending 64 KiB of DATA without
  END_STREAM; the node's RSS before, at its peak, and each 5 s after the
  connections close (until 60 s).
- idle: 2000 TCP connections that send nothing and 500 that send only the
  HTTP/2 preface and SETTINGS; when each group is closed by the node.
- fds: the node with a descriptor limit of 256 (soft and hard), 300 idle
  connections; its CPU over 3 s at the limit, its log lines, and how long
  after the connections close a call succeeds again.
- slowloris: 20 connections to the admin port trickling one byte every 4 s
  for 27 s, /healthz asked every second meanwhile: its worst latency and
  failures.
- pool: 80 connections to the admin port (more than its 64 threads) that
  each trickle a byte of their headers every 1.5 s, within the 2 s read
  timeout, for 30 s; /healthz asked every second meanwhile: how many
  failed, and when it was answered again. What bounds them is the whole
  request's deadline (-request-timeout, 10 s).
- logs: 200,000 misses (distinct keys, pipelined 100 at a time); bytes the
  node's log grew by.

The node runs on core 0, the attacks on core 1 (taskset), as elsewhere.
"""

import argparse
import json
import pathlib
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import limits_test as lt  # noqa: E402  (the HTTP/2 attacker helpers)
from h2_wire_test import GET, H2Client, framed  # noqa: E402

MIB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, bin_dir, logdir, *args, fd_limit=None):
        self.port, self.http = free_port(), free_port()
        self.log_path = pathlib.Path(logdir) / f"node-{self.port}.log"

        def limit():
            if fd_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["taskset", "-c", "0", str(pathlib.Path(bin_dir) / "lcache-node"),
                 "-addr", f"127.0.0.1:{self.port}", "-http", f"127.0.0.1:{self.http}",
                 "-source", "synthetic:100", *args],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit)
        deadline = time.monotonic() + 10
        while "serving group" not in self.log():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                sys.exit(f"node did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def rss(self):
        return lt.rss_bytes(self.proc.pid)

    def ticks(self):
        return lt.cpu_ticks(self.proc.pid)

    def get_ok(self):
        try:
            return lt.get_ok(self)
        except OSError:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def body_attack(node):
    before = node.rss()
    clients = [lt.attacker(node.port) for _ in range(6)]
    chunk = b"\x00\x00\x00\xff\x00" + b"x" * (64 * 1024 - 5)
    peak = before
    started = time.monotonic()
    for i in range(1000):
        for c in clients:
            if lt.open_stream(c, chunk) is None:
                break
        if i % 50 == 0:
            peak = max(peak, node.rss())
    for c in clients:
        lt.resets_until(c, 1000, 1)
    peak = max(peak, node.rss())
    resets = sum(len(c.resets) for c in clients)
    sent = time.monotonic() - started
    served = node.get_ok()
    for c in clients:
        c.close()
    after = []
    for _ in range(12):
        time.sleep(5)
        after.append(node.rss())
    print(f"body: RSS before {before / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB "
          f"(+{(peak - before) / MIB:.1f}), {resets} of 6000 streams reset, sent in {sent:.1f} s, "
          f"others served meanwhile: {served}")
    print("body: RSS after close, every 5 s: " +
          " ".join(f"{(r - before) / MIB:+.1f}" for r in after) + " MiB")


def idle_attack(node):
    silent = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(2000)]
    preface = []
    for _ in range(500):
        c = H2Client(node.port)
        preface.append(c.sock)
    started = time.monotonic()
    closed_at = {}
    for name, group in (("silent", silent), ("preface-only", preface)):
        for s in group:
            s.setblocking(False)
    open_ = {"silent": set(silent), "preface-only": set(preface)}
    while any(open_.values()) and time.monotonic() - started < 90:
        for name, group in open_.items():
            for s in list(group):
                try:
                    if not s.recv(65536):
                        group.discard(s)
                except BlockingIOError:
                    continue
                except OSError:
                    group.discard(s)
            if not group and name not in closed_at:
                closed_at[name] = time.monotonic() - started
        time.sleep(0.25)
    for s in silent + preface:
        s.close()
    for name in ("silent", "preface-only"):
        left = len(open_[name])
        print(f"idle: {name} connections all closed after "
              f"{closed_at.get(name, float('nan')):.1f} s ({left} still open at the end)")


def fd_attack(bin_dir, logdir):
    node = Node(bin_dir, logdir, fd_limit=256)
    socks = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(300)]
    time.sleep(0.5)  # let the node reach the limit
    t0 = node.ticks()
    time.sleep(3)
    cpu = (node.ticks() - t0) / 100 / 3 * 100
    lines = node.log().count("cannot accept connections")
    for s in socks:
        s.close()
    closed = time.monotonic()
    while not node.get_ok():
        if time.monotonic() - closed > 60:
            break
        time.sleep(0.05)
    back = time.monotonic() - closed
    print(f"fds: at the limit the node used {cpu:.1f}% of a core over 3 s, logged "
          f"{lines} accept line(s); a call succeeded {back:.2f} s after the connections closed")
    node.stop()


def trickle(node, connections, head, every_s, run_s):
    """`connections` admin connections that send `head`, then a byte every
    `every_s` for `run_s` seconds, while /healthz is asked every second.
    Returns (failed probes, probes, worst probe latency s, seconds until the
    first probe answered or None, connections the node cut off)."""
    conns = [socket.create_connection(("127.0.0.1", node.http)) for _ in range(connections)]
    for s in conns:
        s.sendall(head)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    failures, asked, worst, first_ok, cut = 0, 0, 0.0, None, 0
    started = time.monotonic()
    next_trickle = started + every_s
    while time.monotonic() - started < run_s:
        t = time.monotonic()
        try:
            with opener.open(f"http://127.0.0.1:{node.http}/healthz", timeout=1) as r:
                ok = r.status == 200
        except OSError:
            ok = False
        worst = max(worst, time.monotonic() - t)
        failures += not ok
        asked += 1
        if ok and first_ok is None:
            first_ok = time.monotonic() - started
        if time.monotonic() >= next_trickle:
            for s in list(conns):
                try:
                    s.sendall(b"x")
                except OSError:
                    conns.remove(s)
                    s.close()
                    cut += 1
            next_trickle += every_s
        time.sleep(max(0, 1 - (time.monotonic() - t)))
    for s in conns:
        s.close()
    return failures, asked, worst, first_ok, cut


def slowloris(node):
    failures, asked, worst, _, _ = trickle(node, 20, b"GET /stats HTTP/1.1\r\nHost: x\r\n", 4, 27)
    print(f"slowloris: /healthz failed {failures} of {asked}, worst latency {worst * 1000:.0f} ms")


def pool_attack(node):
    failures, asked, _, first_ok, cut = trickle(node, 80, b"GET /stats HTTP/1.1\r\nX-Slow: ",
                                                1.5, 30)
    answered = "never" if first_ok is None else f"first at {first_ok:.1f} s"
    print(f"pool: /healthz failed {failures} of {asked} ({answered}); {cut} of 80 trickling "
          f"connections cut off by the node")


def log_storm(node):
    before = node.log_path.stat().st_size
    client = H2Client(node.port)
    done = 0
    while done < 200_000:
        sids = []
        for i in range(100):
            body = framed(json.dumps({"group": "scores", "key": f"storm-{done + i}"}).encode())
            sids.append(client.send(GET, body))
        ended = 0
        while ended < len(sids):
            data = client.sock.recv(1 << 20)
            for ev in client.conn.receive_data(data):
                if type(ev).__name__ == "StreamEnded":
                    ended += 1
                elif type(ev).__name__ == "DataReceived":
                    client.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            client.sock.sendall(client.conn.data_to_send())
        done += len(sids)
    grown = node.log_path.stat().st_size - before
    print(f"logs: 200000 misses grew the log by {grown} bytes "
          f"({node.log().count('load key=')} load lines)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=str(HERE.parent / "build" / "bin"))
    parser.add_argument("--only", default="body,idle,fds,slowloris,pool,logs")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2,500 connections of ours
    subprocess.run(["taskset", "-p", "-c", "1", str(__import__("os").getpid())],
                   stdout=subprocess.DEVNULL, check=False)
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="lcache-net-security-") as logdir:
        for name, attack in (("body", body_attack), ("idle", idle_attack), ("fds", None),
                             ("slowloris", slowloris), ("pool", pool_attack), ("logs", log_storm)):
            if name not in only:
                continue
            if attack is None:  # starts its own node, with a descriptor limit
                fd_attack(args.bin, logdir)
                continue
            node = Node(args.bin, logdir)
            attack(node)
            node.stop()

if __name__ == "__main__":
    main()
