#!/usr/bin/python3
"""Integration tests: real lcache-node processes over 127.0.0.1.

Each test starts its own nodes (lcache-node, stdout/stderr to a log file in
a temporary directory) and talks to them with raw gRPC calls from Debian's
python3-grpcio: the method /lcache.LCache/Get with JSON bytes in and out
(docs/PROTOCOL.md), no generated stubs. Loads are counted from the
nodes' logs (`[getter] load key=KEY`, the key last on the line); owners come
from the Python reference of the Go ring (tests/data/ring_reference.py).
Nothing waits by sleeping: every wait polls a condition against a deadline.

--transport grpc|lean: the nodes' transport (-transport; lean by default).

--mtls: the whole suite over mutual TLS. A temporary directory (removed at
exit) gets a CA, a node certificate (subjectAltName IP:127.0.0.1,
DNS:localhost) and a client certificate, made by the openssl command
(tls_test.Certs). Every node the harness starts serves its peer port with
-tls-cert/-tls-key/-tls-ca -tls-client-auth require (so its calls to peers
are mTLS too) and its admin HTTP listener with -http-tls mtls; every Node's
gRPC channel presents the client certificate, the admin HTTP helpers speak
https:// with it, and lcache-cli gets -tls-ca/-tls-cert/-tls-key. Tests that
cannot run over TLS (a stand-in for a Go node, which speaks plaintext) are
skipped; MtlsModeTest checks that the mode is really on.

Run: /usr/bin/python3 tests/cluster_test.py --bin build/bin [--transport grpc]
     [--mtls] [unittest args]
(Debian's python3, for python3-grpcio; scripts/setup installs both.)
"""

import argparse
import atexit
import base64
import concurrent.futures
import http.client
import importlib.util
import json
import pathlib
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import zlib

import grpc

HERE = pathlib.Path(__file__).resolve().parent
BIN_DIR = None  # set by main() from --bin
TRANSPORT_ARGS = []  # set by main() from --transport: every node gets them
# Set by enable_mtls() (--mtls); empty or None otherwise, so suites importing
# this harness run plaintext unless they enable it.
MTLS = None  # the MtlsFiles in use
TLS_NODE_ARGS = []  # every node the harness starts gets them (after TRANSPORT_ARGS)
TLS_CLIENT_ARGS = []  # every lcache-cli run gets them
CLIENT_CREDENTIALS = None  # every Node's gRPC channel credentials by default
ADMIN_SCHEME = "http"  # of the admin HTTP helpers' URLs

GET = "/lcache.LCache/Get"
GROUP = "scores"
FORWARDED = (("lcache-forwarded", "1"),)
NOT_FOUND = "lru_cache: key not found"
EMPTY_KEY = "lru_cache: empty key"
# A group no node serves: the probe answers "key not found" without a load,
# so waiting for readiness leaves no trace in the load counts.
PROBE = json.dumps({"group": "lcache-test-readiness-probe", "key": "x"}).encode()

_spec = importlib.util.spec_from_file_location("ring_reference", HERE / "data" / "ring_reference.py")
ring_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ring_reference)


def ring_owner(peers, key):
    """The owner of `key` on the Go ring over `peers` (in -peers order)."""
    return ring_reference.owner(ring_reference.build(peers, ring_reference.REPLICAS), key)


def synthetic_value(key, nbytes):
    """tools/node_source.cc SyntheticValue, byte for byte."""
    x = (zlib.crc32(key.encode()) & 0xFFFFFFFF) | 1
    out = bytearray(nbytes)
    for i in range(nbytes):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = ord("a") + x % 26
    return bytes(out)


def request(key, group=GROUP):
    return json.dumps({"group": group, "key": key}).encode()


def wait_until(condition, timeout, what, interval=0.02):
    """Polls `condition` until it returns a true value; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


_given_ports = set()


def free_port():
    """A loopback port nothing listens on now, and never one this process
    handed out before: the kernel may pick a just-closed port again, and a
    node given the same port for -addr and -http cannot start."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


_live = []  # every started process, killed at exit whatever happened


def _kill_all():
    for proc in _live:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(5)
            except OSError:
                pass


class StartError(Exception):
    pass


def skip_if_mtls(test, what):
    """Skips `test` under --mtls: `what` cannot run over TLS."""
    if MTLS is not None:
        test.skipTest(f"{what}: plaintext only (Go nodes speak plaintext)")


class Node:
    """One lcache-node process and a gRPC channel to it."""

    def __init__(self, logdir, port, peers=(), source="synthetic:64", args=()):
        self.logdir = logdir
        self.port = port
        self.addr = f"127.0.0.1:{port}"
        self.peers = list(peers)
        self.source = source
        self.args = list(args)
        self.proc = None
        self.channel = None
        self.starts = 0
        self.preexec = None  # run in the child before exec (e.g. resource limits)
        # grpc.ssl_channel_credentials for a node serving TLS (the harness's
        # client certificate under --mtls).
        self.credentials = CLIENT_CREDENTIALS

    # -- process --------------------------------------------------------

    def start(self, ready_timeout=10.0):
        self.starts += 1
        self.log_path = pathlib.Path(self.logdir) / f"node-{self.port}-{self.starts}.log"
        # Every load logged: loads() counts them (the default samples them).
        cmd = [str(BIN_DIR / "lcache-node"), "-addr", self.addr, "-source", self.source,
               "-log-loads", "all"]
        if self.peers:
            cmd += ["-peers", ",".join(self.peers)]
        cmd += TRANSPORT_ARGS + TLS_NODE_ARGS + self.args
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=self.preexec)
        _live.append(self.proc)
        deadline = time.monotonic() + ready_timeout
        # The node logs "serving" once it listens. Connecting before that
        # would put the channel into gRPC's reconnect backoff (seconds).
        while "lcache-node serving" not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise StartError(f"{self.addr} exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() >= deadline:
                self.kill()
                raise StartError(f"{self.addr} not serving after {ready_timeout} s:\n{self.log()}")
            time.sleep(0.01)
        if self.credentials is not None:
            self.channel = grpc.secure_channel(self.addr, self.credentials,
                                               options=[("grpc.enable_http_proxy", 0)])
        else:
            self.channel = grpc.insecure_channel(self.addr,
                                                 options=[("grpc.enable_http_proxy", 0)])
        self.stub = self.channel.unary_unary(GET, request_serializer=None,
                                             response_deserializer=None)
        # Then it must answer a call (a probe that loads nothing).
        while True:
            if self.proc.poll() is not None:
                raise StartError(f"{self.addr} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.stub(PROBE, timeout=0.5)
                return self
            except grpc.RpcError:
                pass
            if time.monotonic() >= deadline:
                self.kill()
                raise StartError(f"{self.addr} not answering after {ready_timeout} s:\n{self.log()}")
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, test, within=3.0):
        """SIGTERM; the node must exit 0 within `within` seconds.

        Our channel is closed first: an idle grpcio channel does not act on
        the server's GOAWAY (it polls only while a call is active), so the
        node would wait its whole -grace-ms (5 s) for that connection."""
        self.close_channel()
        self.proc.send_signal(signal.SIGCONT)  # in case it was stopped
        self.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
            test.fail(f"{self.addr} did not exit within 10 s of SIGTERM:\n{self.log()}")
        took = time.monotonic() - t0
        test.assertEqual(rc, 0, f"{self.addr} exit code after SIGTERM:\n{self.log()}")
        test.assertLess(took, within, f"{self.addr} took {took:.1f} s to stop:\n{self.log()}")
        test.assertIn("stopped", self.log().splitlines()[-1])

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.close_channel()

    def close_channel(self):
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def signal(self, sig):
        self.proc.send_signal(sig)

    # -- calls ----------------------------------------------------------

    def call(self, body, timeout=5.0, metadata=None, method=GET):
        """Raw call: returns the response bytes, raises grpc.RpcError."""
        stub = self.stub if method == GET else self.channel.unary_unary(
            method, request_serializer=None, response_deserializer=None)
        return stub(body, timeout=timeout, metadata=metadata)

    def get(self, key, timeout=5.0, metadata=None):
        """A Get for `key`: the value bytes; AssertionError on in-band err."""
        resp = json.loads(self.call(request(key), timeout=timeout, metadata=metadata))
        if "err" in resp:
            raise AssertionError(f"{self.addr} Get({key!r}): err {resp['err']!r}")
        return base64.b64decode(resp.get("value", ""), validate=True)

    # -- log ------------------------------------------------------------

    def log(self):
        text = ""
        for n in range(1, self.starts + 1):
            p = pathlib.Path(self.logdir) / f"node-{self.port}-{n}.log"
            if p.exists():
                text += p.read_text(errors="replace")
        return text

    def loads(self):
        """Keys this node's getter loaded (all its runs), in order."""
        return re.findall(r"\[getter\] load key=(\S+)\s*$", self.log(), re.MULTILINE)


class ClusterTest(unittest.TestCase):
    """Base: a temp dir for logs, every node killed at the end."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="lcache-cluster-test-")
        self.logdir = self._tmp.name
        self.nodes = []
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for node in self.nodes:
            node.kill()
        self._tmp.cleanup()

    def start_cluster(self, n, source="synthetic:64", args=(), peers_of=None):
        """Starts n nodes on fresh ports; all get the same -peers list (in
        port order) unless peers_of(addrs, i) says otherwise. Retries with new
        ports if a port was taken in between."""
        for attempt in range(3):
            ports = [free_port() for _ in range(n)]
            addrs = [f"127.0.0.1:{p}" for p in ports]
            nodes = [Node(self.logdir, p,
                          peers=peers_of(addrs, i) if peers_of else addrs,
                          source=source, args=args) for i, p in enumerate(ports)]
            self.nodes += nodes
            try:
                for node in nodes:
                    node.start()
                return nodes
            except StartError:
                for node in nodes:
                    node.kill()
                if attempt == 2:
                    raise

    def stop_all(self):
        for node in self.nodes:
            if node.alive():
                node.stop(self)

    def load_counts(self, nodes):
        counts = {}
        for node in nodes:
            for key in node.loads():
                counts.setdefault(key, []).append(node.addr)
        return counts

    def dump_logs(self, nodes):
        return "\n".join(f"--- {n.addr}\n{n.log()}" for n in nodes)


class RoutingTest(ClusterTest):
    def test_each_key_loaded_once_by_its_ring_owner(self):
        nodes = self.start_cluster(3, source="synthetic:64")
        peers = nodes[0].peers
        keys = [f"k{n}-{random.randrange(1 << 30)}" for n in range(1000)]
        calls = [(k, node) for k in keys for node in nodes]
        random.shuffle(calls)
        got = {}
        for key, node in calls:
            got.setdefault(key, {})[node.addr] = node.get(key)

        for key in keys:
            want = synthetic_value(key, 64)
            for addr, value in got[key].items():
                self.assertEqual(value, want, f"{key} through {addr}")
        counts = self.load_counts(nodes)
        owners = {}
        for key in keys:
            self.assertEqual(counts.get(key), [ring_owner(peers, key)],
                             f"{key}: nodes that loaded it (want exactly the ring owner)")
            owners[ring_owner(peers, key)] = owners.get(ring_owner(peers, key), 0) + 1
        self.assertEqual(sorted(counts), sorted(keys), "loads of keys nobody asked for")
        self.assertEqual(len(owners), 3, f"the keys should spread over all nodes: {owners}")
        self.stop_all()


class BadInputTest(ClusterTest):
    def setUp(self):
        super().setUp()
        (self.node,) = self.start_cluster(1, source="synthetic:16")

    def status_of(self, body, method=GET):
        try:
            return grpc.StatusCode.OK, self.node.call(body, method=method)
        except grpc.RpcError as e:
            return e.code(), e.details()

    def assert_still_serving(self, after):
        self.assertTrue(self.node.alive(), f"node died after {after}:\n{self.node.log()}")
        key = f"alive-{random.randrange(1 << 30)}"
        self.assertEqual(self.node.get(key), synthetic_value(key, 16), f"after {after}")

    def test_invalid_argument(self):
        cases = {
            "empty message": b"",
            "invalid JSON": b'{"group": "scores", "key": ',
            "not JSON at all": b"\x00\xff\xfe garbage",
            "JSON array": b'["scores", "Tom"]',
            "JSON string": b'"Tom"',
            "key as number": b'{"group": "scores", "key": 42}',
            "key as object": b'{"group": "scores", "key": {"k": 1}}',
            "group as number": b'{"group": 7, "key": "Tom"}',
            "key over 4096 bytes": request("k" * 4097),
            "message over 64 KiB": json.dumps(
                {"group": GROUP, "key": "Tom", "pad": "x" * (70 << 10)}).encode(),
        }
        for name, body in cases.items():
            with self.subTest(name):
                code, details = self.status_of(body)
                self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {details!r}")
                self.assertTrue(details, f"{name}: INVALID_ARGUMENT without a message")
                self.assert_still_serving(name)
        self.assertTrue(all(k.startswith("alive-") for k in self.node.loads()),
                        f"a rejected request caused a load: {self.node.loads()}")
        self.node.stop(self)

    def test_in_band_errors(self):
        cases = {
            "empty key": (request(""), {"err": EMPTY_KEY}),
            "unknown group": (request("Tom", group="no-such-group"), {"err": NOT_FOUND}),
            "missing key field": (b'{"group": "scores"}', {"err": EMPTY_KEY}),
            # Go's encoding/json leaves a string field as it was on null: "".
            "key as null": (b'{"group": "scores", "key": null}', {"err": EMPTY_KEY}),
        }
        for name, (body, want) in cases.items():
            with self.subTest(name):
                code, resp = self.status_of(body)
                self.assertEqual(code, grpc.StatusCode.OK, f"{name}: {resp!r}")
                self.assertEqual(json.loads(resp), want, name)
                self.assert_still_serving(name)
        self.node.stop(self)

    def test_limits_and_unknown_fields_accepted(self):
        key = "k" * 4096  # exactly the limit
        code, resp = self.status_of(request(key))
        self.assertEqual(code, grpc.StatusCode.OK, resp)
        self.assertEqual(json.loads(resp), {"value": base64.b64encode(synthetic_value(key, 16)).decode()})
        body = json.dumps({"key": "extra", "future": [1, {"x": None}], "group": GROUP}).encode()
        code, resp = self.status_of(body)
        self.assertEqual(code, grpc.StatusCode.OK, resp)
        self.assertEqual(json.loads(resp), {"value": base64.b64encode(synthetic_value("extra", 16)).decode()})
        self.node.stop(self)

    def test_unknown_method(self):
        for method in ("/lcache.LCache/Put", "/lcache.LCache/get", "/other.Service/Get", "/grpc.health.v1.Health/Watch"):
            with self.subTest(method):
                code, details = self.status_of(request("Tom"), method=method)
                self.assertEqual(code, grpc.StatusCode.UNIMPLEMENTED, f"{method}: {details!r}")
                self.assert_still_serving(method)
        self.node.stop(self)


class WireBytesTest(ClusterTest):
    def test_found_value_bytes(self):
        a, b = self.start_cluster(2, source="synthetic:64")
        # A key each node owns, so both the local load and the peer-routed
        # answer (and then the hits) are seen on the wire.
        keys = {}
        n = 0
        while len(keys) < 2:
            keys.setdefault(ring_owner(a.peers, f"wire-{n}"), f"wire-{n}")
            n += 1
        for key in keys.values():
            want = b'{"value":"' + base64.b64encode(synthetic_value(key, 64)) + b'"}'
            asked = set()
            for node in (a, b, a, b):  # miss, then peer or hit, then hits
                got = node.call(request(key))
                if node.addr == ring_owner(a.peers, key) or node.addr not in asked:
                    # The owner's copy never expires, and a fetched answer is
                    # passed on as the owner sent it: the Go program's bytes.
                    self.assertEqual(got, want, f"{key} through {node.addr}")
                else:
                    # The other node answers from its hot copy (kept on the
                    # first fetch), which says how long it may live.
                    answer = json.loads(got)
                    self.assertEqual(base64.b64decode(answer["value"]), synthetic_value(key, 64))
                    self.assertTrue(0 < answer["ttl_ms"] <= 60000, got)
                    self.assertEqual(list(answer), ["value", "ttl_ms"], got)
                asked.add(node.addr)
            got = a.call(request(key), metadata=FORWARDED)
            if ring_owner(a.peers, key) == a.addr:
                self.assertEqual(got, want)
            else:
                # a's hot copy of b's value (kept on its first fetch): a copy
                # of another node's value lives at most -hot-max-age (60 s),
                # and says so.
                answer = json.loads(got)
                self.assertEqual(base64.b64decode(answer["value"]), synthetic_value(key, 64))
                self.assertTrue(0 < answer["ttl_ms"] <= 60000, got)
        self.stop_all()

    def test_demo_bytes(self):
        (node,) = self.start_cluster(1, source="demo")
        self.assertEqual(node.call(request("Tom")), b'{"value":"NjMw"}')
        self.assertEqual(node.call(request("Tom")), b'{"value":"NjMw"}')  # a hit
        self.assertEqual(node.call(request("Bob")), b'{"err":"lru_cache: key not found"}')
        self.assertEqual(node.call(request("Bob"), metadata=FORWARDED),
                         b'{"err":"lru_cache: key not found"}')
        self.assertEqual(node.call(request("")), b'{"err":"lru_cache: empty key"}')
        self.assertEqual(node.call(request("Tom", group="nope")),
                         b'{"err":"lru_cache: key not found"}')
        node.stop(self)

    def test_empty_value_omitted(self):
        (node,) = self.start_cluster(1, source="synthetic:0")
        self.assertEqual(node.call(request("empty")), b"{}")
        self.assertEqual(node.call(request("empty")), b"{}")  # a hit
        node.stop(self)


class SingleflightTest(ClusterTest):
    # On the owner, client requests run in Group's remote flight and
    # forwarded (marked) requests in its local flight; both must end in one
    # getter call (the remote flight loads through the local one).

    def test_concurrent_requests_across_cluster(self):
        nodes = self.start_cluster(3, source="synthetic:64:200")
        key = f"hot-{random.randrange(1 << 30)}"
        barrier = threading.Barrier(100)

        def one(i):
            node = nodes[i % 3]
            barrier.wait(10)
            return node.get(key, timeout=10)

        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            values = list(pool.map(one, range(100)))
        self.assertEqual(set(values), {synthetic_value(key, 64)})
        loads = self.load_counts(nodes).get(key, [])
        owner = ring_owner(nodes[0].peers, key)
        self.assertEqual(loads, [owner], "nodes that loaded the hot key (one load, by its owner)")
        self.stop_all()

    def test_marked_and_unmarked_share_one_load(self):
        # One node, a 1 s load: a client request and a forwarded (marked)
        # request for the same cold key, sent together, must share one load.
        (node,) = self.start_cluster(1, source="synthetic:64:1000")
        key = f"hot2-{random.randrange(1 << 30)}"
        calls = [node.stub.future(request(key), timeout=10),
                 node.stub.future(request(key), timeout=10, metadata=FORWARDED)]
        want = b'{"value":"' + base64.b64encode(synthetic_value(key, 64)) + b'"}'
        self.assertEqual([c.result() for c in calls], [want, want])
        self.assertEqual(node.loads().count(key), 1, "loads of the key")
        node.stop(self)


class DeadPeerTest(ClusterTest):
    TIMEOUT_MS = 500
    LOAD_MS = 20
    MARGIN_MS = 750

    def keys_owned(self, peers, prefix, want):
        """Fresh keys: `want` maps owner address -> how many keys it should own."""
        out, n, need = [], 0, dict(want)
        while any(need.values()):
            key = f"{prefix}-{random.randrange(1 << 30)}-{n}"
            n += 1
            o = ring_owner(peers, key)
            if need.get(o, 0) > 0:
                need[o] -= 1
                out.append(key)
        random.shuffle(out)
        return out

    def timed_get(self, node, key):
        t0 = time.monotonic()
        value = node.get(key, timeout=10)
        return key, value, (time.monotonic() - t0) * 1000

    def test_a_paused_owner_costs_clients_with_the_go_deadline_no_error(self):
        # The node's defaults (peer timeout 2 s, ejection on) and clients with
        # the Go program's 2 s deadline: a peer call gets the time left less a
        # reserve, so the fallback answers in time (docs/PROTOCOL.md 2.8).
        a, b, c = self.start_cluster(3)
        peers = a.peers
        for key in self.keys_owned(peers, "warm", {b.addr: 2}):
            self.assertEqual(a.get(key, timeout=2.0), synthetic_value(key, 64))
        b.signal(signal.SIGSTOP)
        try:
            keys = self.keys_owned(peers, "paused", {b.addr: 16})
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda k: self.timed_get_within(a, k, 2.0), keys))
            for key, value, ms in results:
                self.assertEqual(value, synthetic_value(key, 64), key)
            slowest = max(ms for _, _, ms in results)
            # The owner was really paused: the first calls waited for it.
            self.assertGreaterEqual(slowest, 1000, results)
        finally:
            b.signal(signal.SIGCONT)
        resumed = time.monotonic()
        # Taken back soon: the ejection's backoff is at most 2 s, and the
        # probe finds the peer at once.
        fresh = iter(self.keys_owned(peers, "back", {b.addr: 1000}))

        def forwarded_to_b():
            key = next(fresh)
            self.assertEqual(a.get(key, timeout=2.0), synthetic_value(key, 64))
            return key in b.loads()

        wait_until(forwarded_to_b, 10, "a forwarding to b after SIGCONT", interval=0.05)
        self.assertLess(time.monotonic() - resumed, 3.5)

    def timed_get_within(self, node, key, timeout):
        t0 = time.monotonic()
        value = node.get(key, timeout=timeout)
        return key, value, (time.monotonic() - t0) * 1000

    def test_killed_then_hung_peer_then_restart(self):
        # Ejection off: this test pins the path without it (every request for
        # a hung owner waits the deadline); OutlierEjectionTest covers it.
        a, b, c = self.start_cluster(
            3, source=f"synthetic:64:{self.LOAD_MS}",
            args=["-peer-timeout-ms", str(self.TIMEOUT_MS), "-eject-after", "0"])
        peers = a.peers
        # Warm the channels between nodes (so the kill is seen on live ones).
        for key in self.keys_owned(peers, "warm", {a.addr: 2, b.addr: 2, c.addr: 2}):
            for node in (a, b, c):
                self.assertEqual(node.get(key), synthetic_value(key, 64))

        # 1. c killed: every request through a or b succeeds.
        c.signal(signal.SIGKILL)
        c.proc.wait(10)
        keys = self.keys_owned(peers, "dead", {a.addr: 15, b.addr: 15, c.addr: 20})
        for key in keys:
            for node in (a, b):
                self.assertEqual(node.get(key, timeout=10), synthetic_value(key, 64),
                                 f"{key} through {node.addr} with {c.addr} dead")

        # 2. b hung too: every request through a succeeds, none slower than
        # the peer deadline plus the load plus a margin. Four at a time, fewer
        # than a's load threads, so no call queues behind another.
        b.signal(signal.SIGSTOP)
        keys = self.keys_owned(peers, "hung", {a.addr: 6, b.addr: 12, c.addr: 6})
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda k: self.timed_get(a, k), keys))
        limit = self.TIMEOUT_MS + self.LOAD_MS + self.MARGIN_MS
        for key, value, ms in results:
            self.assertEqual(value, synthetic_value(key, 64), key)
            self.assertLess(ms, limit, f"{key} (owner {ring_owner(peers, key)}) took {ms:.0f} ms")
        slow = [ms for key, _, ms in results if ring_owner(peers, key) == b.addr]
        # The first of the hung owner's keys waited for the deadline: the test
        # did hang b. Later ones may end sooner: a call that timed out makes a
        # PING b, and when nothing answers within a second the connection is
        # dropped and the calls on it fall back at once (h2_client.cc).
        self.assertGreaterEqual(max(slow), self.TIMEOUT_MS * 0.9, slow)
        self.assertGreaterEqual(sum(ms >= self.TIMEOUT_MS * 0.9 for ms in slow), 4, slow)
        b.signal(signal.SIGCONT)

        # 3. c restarted on its port: keys it owns are loaded by it again,
        # once the survivors' channels reconnect (gRPC's backoff, so poll).
        c.start()
        c_keys = iter(self.keys_owned(peers, "back", {c.addr: 1000}))

        def routed_to_c(through):
            key = next(c_keys)
            self.assertEqual(through.get(key), synthetic_value(key, 64))
            return key in c.loads()

        for node in (a, b):
            wait_until(lambda: routed_to_c(node), 30, f"{node.addr} routing to restarted {c.addr}",
                       interval=0.1)
        # Now connected: every further key c owns is loaded by c alone.
        batch = [next(c_keys) for _ in range(10)]
        for key in batch:
            for node in (a, b):
                self.assertEqual(node.get(key), synthetic_value(key, 64))
        counts = self.load_counts([a, b, c])
        for key in batch:
            self.assertEqual(counts.get(key), [c.addr], key)
        self.stop_all()


class DisagreeingPeersTest(ClusterTest):
    TIMEOUT_MS = 1000

    def test_no_loop_no_wait(self):
        # a: the ring is {a, b}; b: the ring is {a} alone, so b thinks a owns
        # every key while a thinks b owns about half of them.
        def peers_of(addrs, i):
            return addrs if i == 0 else addrs[:1]

        a, b = self.start_cluster(2, source="synthetic:64", peers_of=peers_of,
                                  args=["-peer-timeout-ms", str(self.TIMEOUT_MS)])
        keys = [f"dis-{random.randrange(1 << 30)}-{n}" for n in range(50)]
        a_thinks_b = [k for k in keys if ring_owner(a.peers, k) == b.addr]
        self.assertTrue(5 <= len(a_thinks_b) <= 45, len(a_thinks_b))

        def timed(node, key, metadata=None):
            t0 = time.monotonic()
            value = node.get(key, timeout=10, metadata=metadata)
            return node.addr, key, value, (time.monotonic() - t0) * 1000

        # Unmarked (client) requests through both nodes at once.
        jobs = [(node, key) for key in keys for node in (a, b)]
        random.shuffle(jobs)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda j: timed(*j), jobs))
        for addr, key, value, ms in results:
            self.assertEqual(value, synthetic_value(key, 64), f"{key} through {addr}")
            self.assertLess(ms, self.TIMEOUT_MS, f"{key} through {addr} took {ms:.0f} ms")
        for node in (a, b):
            loads = node.loads()
            worst = max((loads.count(k), k) for k in keys)
            self.assertLessEqual(worst[0], 2, f"{node.addr} loaded {worst[1]} {worst[0]} times")
        for key in keys:  # every answer came from a load somewhere
            self.assertTrue(self.load_counts([a, b]).get(key), key)
        self.assertFalse(re.search(r"peer .* failed", a.log() + b.log()),
                         "a peer call failed (timed out?):\n" + self.dump_logs([a, b]))

        # Marked requests are served by the node asked, never forwarded: a
        # fresh key marked to b (which thinks a owns it) is loaded by b only.
        for node, other in ((a, b), (b, a)):
            for n in range(5):
                key = f"marked-{node.port}-{n}-{random.randrange(1 << 30)}"
                _, _, value, ms = timed(node, key, metadata=FORWARDED)
                self.assertEqual(value, synthetic_value(key, 64))
                self.assertLess(ms, self.TIMEOUT_MS, key)
                self.assertEqual(self.load_counts([a, b]).get(key), [node.addr], key)
        self.stop_all()


def serve_get_only(get):
    """A gRPC server on 127.0.0.1 that, like a node of the Go program,
    serves /lcache.LCache/Get with `get(body, context)` and nothing else (gRPC
    answers any other method UNIMPLEMENTED). Returns (server, "host:port")."""
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(8))
    handler = grpc.unary_unary_rpc_method_handler(get)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("lcache.LCache", {"Get": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


class FakeGoNode:
    """A stand-in for a node of the Go program that thinks `owner` owns every
    key: it forwards each request to `owner` WITHOUT the forwarding mark (Go
    nodes do not send one), with a `deadline_s` deadline, and on any failure
    loads the key itself (synthetic:64), as the Go program falls back."""

    def __init__(self, deadline_s):
        self.deadline_s = deadline_s
        self.owner_stub = None
        self.forwards = 0
        self.local_loads = []
        self.server, self.addr = serve_get_only(self._get)

    def forward_to(self, owner_addr):
        channel = grpc.insecure_channel(owner_addr)
        self.owner_stub = channel.unary_unary(GET)

    def _get(self, body, context):
        key = json.loads(body)["key"]
        self.forwards += 1
        try:
            return self.owner_stub(body, timeout=self.deadline_s)  # no mark
        except grpc.RpcError:
            self.local_loads.append(key)
            value = base64.b64encode(synthetic_value(key, 64)).decode()
            return json.dumps({"value": value}, separators=(",", ":")).encode()

    def stop(self):
        self.server.stop(0)


class GoCycleTest(ClusterTest):
    GO_DEADLINE_S = 1.0
    CPP_TIMEOUT_MS = 4000

    def test_cycle_through_a_node_without_the_mark_ends_within_one_deadline(self):
        # The C++ node's ring is {cpp, go}; the Go node thinks cpp owns
        # everything. A key the C++ ring gives to go travels cpp -> go (marked,
        # but Go ignores marks) -> cpp (unmarked), where it joins cpp's own
        # flight, which waits on go. The cycle must end when go's deadline
        # expires and go loads the key itself, well before cpp's deadline.
        skip_if_mtls(self, "a stand-in for a Go node (FakeGoNode) in the ring")
        go = FakeGoNode(self.GO_DEADLINE_S)
        self.addCleanup(go.stop)
        port = free_port()
        cpp = Node(self.logdir, port, peers=[f"127.0.0.1:{port}", go.addr],
                   args=["-peer-timeout-ms", str(self.CPP_TIMEOUT_MS)])
        self.nodes.append(cpp)
        cpp.start()
        go.forward_to(cpp.addr)
        key = next(k for k in (f"cycle-{n}" for n in range(1000))
                   if ring_owner(cpp.peers, k) == go.addr)

        t0 = time.monotonic()
        value = cpp.get(key, timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(value, synthetic_value(key, 64))
        self.assertLess(elapsed, self.GO_DEADLINE_S + 1.0,
                        f"the cycle took {elapsed:.2f} s (Go deadline {self.GO_DEADLINE_S} s)")
        self.assertGreaterEqual(elapsed, self.GO_DEADLINE_S * 0.9, "no cycle happened")
        self.assertEqual(go.local_loads, [key], "the Go node's fallback load ends the cycle")
        self.assertNotIn(key, cpp.loads(), "cpp waited in its flight instead of loading")
        cpp.stop(self)


class OutlierEjectionTest(ClusterTest):
    """A peer SIGSTOPped under load is ejected after a few deadlines: its keys
    are then loaded locally at load speed (only the requests in flight when it
    hung, the three that eject it and each failed probe wait the deadline);
    after SIGCONT a probe brings it back within the backoff."""

    TIMEOUT_MS = 400
    LOAD_MS = 20
    EJECT_AFTER = 3
    BASE_MS = 500
    MAX_MS = 2000
    THREADS = 4  # fewer than the nodes' load threads: no request queues behind another
    HANDFUL = 10

    def test_hung_peer_is_ejected_then_returns(self):
        a, b, c = self.start_cluster(
            3, source=f"synthetic:64:{self.LOAD_MS}",
            args=["-peer-timeout-ms", str(self.TIMEOUT_MS),
                  "-eject-after", str(self.EJECT_AFTER),
                  "-eject-base-ms", str(self.BASE_MS), "-eject-max-ms", str(self.MAX_MS)])
        peers = a.peers
        lock = threading.Lock()
        serial = iter(range(1 << 30))

        def b_key():
            """A fresh key that b owns (on the ring every node shares)."""
            while True:
                with lock:
                    key = f"ej-{next(serial)}-{random.randrange(1 << 30)}"
                if ring_owner(peers, key) == b.addr:
                    return key

        # The channel a -> b is up: a forwards b's keys to b.
        warm = b_key()
        self.assertEqual(a.get(warm), synthetic_value(warm, 64))
        self.assertIn(warm, b.loads())

        # Closed-loop load on a, every request a miss for one of b's keys.
        results = []  # (start, end, key, ok), monotonic seconds
        stop = threading.Event()

        def worker():
            while not stop.is_set():
                key = b_key()
                t0 = time.monotonic()
                try:
                    ok = a.get(key, timeout=10) == synthetic_value(key, 64)
                except (grpc.RpcError, AssertionError):
                    ok = False
                with lock:
                    results.append((t0, time.monotonic(), key, ok))

        def done_since(t):
            with lock:
                return [r for r in results if r[0] >= t]

        threads = [threading.Thread(target=worker) for _ in range(self.THREADS)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(done_since(0)) >= 50, 30, "load before the hang")

            # 1. b hangs. Stay hung until a has ejected it, a probe has
            # failed (the backoff grew), and many of b's keys went through.
            b.signal(signal.SIGSTOP)
            hung_at = time.monotonic()
            wait_until(lambda: "ejected" in a.log(), 10, "a ejecting b", interval=0.05)
            wait_until(lambda: "after a failed probe" in a.log(), 10, "a failed probe",
                       interval=0.05)
            wait_until(lambda: len(done_since(hung_at)) >= 200, 30, "load while b is out")

            # 2. b resumes: a probe after the current backoff (at most
            # MAX_MS) finds it, and a forwards b's keys to b again.
            b.signal(signal.SIGCONT)
            resumed_at = time.monotonic()

            def forwarded_again():
                loaded = set(b.loads())
                return [r for r in done_since(resumed_at) if r[2] in loaded]

            wait_until(forwarded_again, 10, "b used again after SIGCONT", interval=0.05)
            back_after = min(r[1] for r in forwarded_again()) - resumed_at
            wait_until(lambda: "returned" in a.log(), 10, "a logging b's return")
            # Forwarding goes on: of the next requests, most are loaded by b.
            settled = time.monotonic()
            wait_until(lambda: len(done_since(settled)) >= 40, 30, "load after the return")
        finally:
            stop.set()
            for t in threads:
                t.join(30)

        self.assertTrue(all(r[3] for r in results),
                        "every request must be answered with its value:\n" + self.dump_logs([a]))
        timeout_s = self.TIMEOUT_MS / 1000
        during = [r for r in results if r[1] > hung_at and r[0] < resumed_at]
        slow = [r for r in during if r[1] - r[0] >= 0.9 * timeout_s]
        fast = [r for r in during if r[1] - r[0] < 0.5 * timeout_s]
        ms = sorted(round((r[1] - r[0]) * 1000) for r in during)
        summary = (f"{len(during)} requests while b was hung, {len(slow)} waited the deadline; "
                   f"latencies (ms) {ms[:5]} .. {ms[-12:]}")
        print("\n  " + summary + f"; b back {back_after * 1000:.0f} ms after SIGCONT",
              file=sys.stderr)
        # The hang was real: some requests waited the deadline.
        self.assertGreaterEqual(len(slow), self.EJECT_AFTER, summary)
        # A handful at most: in flight at the hang, the ejecting ones, failed probes.
        self.assertLessEqual(len(slow), self.HANDFUL, summary)
        # Every other request was served at local-load speed, not near the
        # deadline; a handful at most in between (calls on a's connection to
        # b when a found it dead, failed at once, before their deadline).
        self.assertLessEqual(len(during) - len(fast), self.HANDFUL, summary)
        self.assertGreaterEqual(len(fast), 150, summary)
        # Within the (capped) backoff, plus the probe's round trip and a margin.
        self.assertLess(back_after, (self.MAX_MS + self.TIMEOUT_MS) / 1000 + 1.0,
                        f"b used again {back_after:.2f} s after SIGCONT")
        after = [r for r in results if r[0] >= settled]
        loaded_by_b = set(b.loads())
        on_b = sum(r[2] in loaded_by_b for r in after)
        self.assertGreaterEqual(on_b, len(after) * 0.9,
                                f"only {on_b} of {len(after)} keys forwarded to b after its return")
        log = a.log()
        self.assertRegex(log, r"peer \S+ ejected for 500 ms \(ejection 1 in a row\)")
        self.assertRegex(log, r"peer \S+ ejected for 1000 ms \(ejection 2 in a row\) after a "
                              r"failed probe")
        self.assertRegex(log, r"peer \S+ returned: probe answered after \d+ ms out")
        self.stop_all()
        self.assertRegex(a.log(), r"ejections (?:[2-9]|\d\d+) returns 1 probes ")


class BalancedRingTest(ClusterTest):
    """-ring balanced: the nodes agree on every key's owner (one load per key)
    and it is not the groupcache ring's owner. The owners themselves are
    checked against Python's xxhash in tests/hash_ring_test.cc."""

    def test_nodes_agree_on_the_balanced_ring(self):
        nodes = self.start_cluster(3, source="synthetic:64", args=["-ring", "balanced"])
        self.assertIn("ring balanced", nodes[0].log())
        keys = [f"bal-{n}-{random.randrange(1 << 30)}" for n in range(300)]
        for n, key in enumerate(keys):
            for node in (nodes[n % 3], nodes[(n + 1) % 3]):
                self.assertEqual(node.get(key), synthetic_value(key, 64))
        counts = self.load_counts(nodes)
        self.assertEqual(sorted(counts), sorted(keys))
        for key in keys:
            self.assertEqual(len(counts[key]), 1, f"{key} loaded by {counts[key]}")
        per_node = {n.addr: sum(counts[k] == [n.addr] for k in keys) for n in nodes}
        self.assertTrue(all(c >= 60 for c in per_node.values()), per_node)
        peers = nodes[0].peers
        not_groupcache = sum(counts[k] != [ring_owner(peers, k)] for k in keys)
        self.assertGreater(not_groupcache, 100, "the owners look like the groupcache ring's")
        self.stop_all()

    def test_bad_ring_ejection_and_replica_flags_are_refused(self):
        for args, message in (
                (["-ring", "maglev"], "-ring must be groupcache or balanced, got maglev"),
                (["-eject-after", "-1"], "-eject-after must be >= 0"),
                (["-eject-base-ms", "0"], "-eject-base-ms > 0"),
                (["-eject-base-ms", "2000", "-eject-max-ms", "1000"], "-eject-max-ms >= it"),
                (["-replicas", "0"], "-replicas must be in [1, 16], got 0"),
                (["-replicas", "17"], "-replicas must be in [1, 16], got 17"),
                (["-replicas", "2", "-replica-mb", "0"], "needs a replica store"),
                (["-replicas", "2", "-cache-mb", "0"], "needs -replica-mb"),
                (["-replica-mb", "-2"], "-replica-mb must be -1"),
                (["-etcd-lapse", "ignore"], "-etcd-lapse must be serve or refuse")):
            port = free_port()
            proc = subprocess.run([str(BIN_DIR / "lcache-node"), "-addr", f"127.0.0.1:{port}"]
                                  + TLS_NODE_ARGS + args, capture_output=True, text=True,
                                  timeout=10)
            self.assertEqual(proc.returncode, 2, f"{args}: {proc.stderr + proc.stdout}")
            self.assertIn(message, proc.stderr + proc.stdout, args)

# -- operations: the admin HTTP listener, gRPC health, lifecycle ----

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"  # HealthCheckResponse{status}
# The admin HTTP helpers' opener: no proxy; under --mtls, HTTPS trusting the
# test CA and showing the client certificate (enable_mtls replaces it).
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def admin_url(port, path):
    """The URL of `path` on a node's admin listener (https:// under --mtls)."""
    return f"{ADMIN_SCHEME}://127.0.0.1:{port}{path}"


def health_request(service=""):
    """A grpc.health.v1.HealthCheckRequest, protobuf bytes by hand."""
    raw = service.encode()
    return b"\x0a" + bytes([len(raw)]) + raw if raw else b""


def http_get(port, path, timeout=10):
    """(status, body bytes, headers) of GET http(s)://127.0.0.1:port/path."""
    try:
        with _no_proxy.open(admin_url(port, path), timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def metric_values(text):
    """{'name{labels}': float} of an exposition text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class OpsTest(ClusterTest):
    def start_http_nodes(self, n, source="demo", args=()):
        """n nodes with -http on fresh ports (all on one ring); waits for
        /healthz. Returns [(node, http_port)]."""
        ports = [free_port() for _ in range(n)]
        addrs = [f"127.0.0.1:{p}" for p in ports]
        out = []
        for port in ports:
            hport = free_port()
            node = Node(self.logdir, port, peers=addrs if n > 1 else (), source=source,
                        args=["-http", f"127.0.0.1:{hport}", *args])
            self.nodes.append(node)
            node.start()
            wait_until(lambda: self.healthz(hport), 10, f"/healthz of {node.addr}")
            out.append((node, hport))
        return out

    @staticmethod
    def healthz(hport):
        try:
            return http_get(hport, "/healthz", timeout=1)[0] == 200
        except OSError:
            return False

    def metrics(self, hport):
        status, body, headers = http_get(hport, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        return body.decode()

    def promtool_check(self, text):
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool not found (Debian package prometheus; "
                                       "scripts/setup installs it)")
        r = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, f"promtool check metrics:\n{r.stdout.decode()}"
                                          f"{r.stderr.decode()}\n--- metrics:\n{text}")

    def stats(self, hport):
        status, body, _ = http_get(hport, "/stats")
        self.assertEqual(status, 200)
        return json.loads(body)

    def health(self, node, service=""):
        return node.call(health_request(service), method=HEALTH_CHECK, timeout=2)


class AdminHttpTest(OpsTest):
    def test_metrics_pass_promtool_and_follow_requests(self):
        (a, ah), (b, bh) = self.start_http_nodes(2, source="synthetic:32")
        text = self.metrics(ah)
        self.promtool_check(text)
        m = metric_values(text)
        g = '{group="scores"}'
        self.assertEqual(m["lcache_gets_total" + g], 0)
        self.assertEqual(m["lcache_peers"], 2)

        key_a = next(k for k in (f"mine-{n}" for n in range(1000)) if ring_owner(a.peers, k) == a.addr)
        key_b = next(k for k in (f"theirs-{n}" for n in range(1000)) if ring_owner(a.peers, k) == b.addr)
        for key in (key_a, key_a, key_b):
            status, body, _ = http_get(ah, f"/groups/scores/{key}")
            self.assertEqual((status, body), (200, synthetic_value(key, 32)), key)

        text = self.metrics(ah)
        self.promtool_check(text)
        m = metric_values(text)
        want = {"gets": 3, "hits": 1, "misses": 2, "loads": 2, "loads_deduped": 2,
                "local_loads": 1, "local_load_errs": 0, "peer_loads": 1, "peer_errors": 0,
                "server_requests": 0, "evictions": 0, "expirations": 0}
        for name, value in want.items():
            self.assertEqual(m[f"lcache_{name}_total{g}"], value, name)
        self.assertEqual(m["lcache_items" + g], 1)
        self.assertEqual(m["lcache_bytes" + g], len(key_a) + 32)
        for hist, count in (("get_miss", 2), ("peer_call", 1), ("getter", 1)):
            name = f"lcache_{hist}_duration_seconds"
            self.assertEqual(m[f'{name}_count{g}'], count, hist)
            self.assertEqual(m[f'{name}_bucket{{group="scores",le="+Inf"}}'], count, hist)
            self.assertGreater(m[f'{name}_sum{g}'], 0, hist)
        # The owner served the forwarded key: a server request and a load.
        mb = metric_values(self.metrics(bh))
        self.assertEqual(mb["lcache_server_requests_total" + g], 1)
        self.assertEqual(mb["lcache_local_loads_total" + g], 1)

        stats = self.stats(ah)
        self.assertEqual(stats["ready"], True)
        self.assertEqual(stats["groups"]["scores"]["hits"], 1)
        self.assertEqual(stats["groups"]["scores"]["latency"]["peer_call_duration_seconds"]["count"], 1)
        status, body, _ = http_get(ah, "/peers")
        self.assertEqual(status, 200)
        peers = json.loads(body)
        self.assertEqual(peers["self"], a.addr)
        self.assertEqual(sorted(peers["peers"]), sorted(a.peers))
        self.stop_all()

    def test_groups_status_codes(self):
        ((node, hport),) = self.start_http_nodes(1, source="demo")
        cases = [
            ("/groups/scores/Tom", 200, b"630"),
            ("/groups/scores/Tom", 200, b"630"),  # a hit
            ("/groups/scores/Bob", 404, NOT_FOUND.encode() + b"\n"),
            ("/groups/scores/", 400, EMPTY_KEY.encode() + b"\n"),
            ("/groups/scores/" + "k" * 4097, 400, b"lcache: key too long (4097 bytes, max 4096)\n"),
            ("/groups/nope/Tom", 404, b'lcache: no group "nope" on this node\n'),
            ("/nothing-here", 404, None),
        ]
        for path, status, body in cases:
            with self.subTest(path[:40]):
                got_status, got_body, _ = http_get(hport, path)
                self.assertEqual(got_status, status, got_body)
                if body is not None:
                    self.assertEqual(got_body, body)
        self.assertEqual(node.loads(), ["Tom", "Bob"])
        node.stop(self)

    def test_overload_is_503_and_hits_still_served(self):
        # One load slot (-load-threads 1) and a 1.5 s getter.
        ((node, hport),) = self.start_http_nodes(1, source="synthetic:8:1500",
                                                 args=["-load-threads", "1"])
        status, _, _ = http_get(hport, "/groups/scores/warm")
        self.assertEqual(status, 200)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(http_get, hport, "/groups/scores/slow")
            wait_until(lambda: self.stats(hport)["groups"]["scores"]["misses"] == 2, 5,
                       "the slow load to start")
            status, body, headers = http_get(hport, "/groups/scores/other")
            self.assertEqual(status, 503, body)
            self.assertEqual(headers["Retry-After"], "1")
            self.assertEqual(http_get(hport, "/groups/scores/warm")[:2],
                             (200, synthetic_value("warm", 8)))
            self.assertEqual(slow.result(10)[:2], (200, synthetic_value("slow", 8)))
        self.assertNotIn("other", node.loads())
        node.stop(self)


class HealthTest(OpsTest):
    def test_grpc_health_check(self):
        (node,) = self.start_cluster(1, source="demo")
        self.assertEqual(self.health(node), SERVING)
        self.assertEqual(self.health(node, "lcache.LCache"), SERVING)
        with self.assertRaises(grpc.RpcError) as e:
            self.health(node, "other.Service")
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        for bad in (b"\x0a\x05ab", b"\x02\x00", b"\x0b"):  # truncated, field 0, wire type 3
            with self.assertRaises(grpc.RpcError) as e:
                node.call(bad, method=HEALTH_CHECK)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, bad)
        # Unknown fields are skipped, as protobuf does.
        self.assertEqual(node.call(b"\x10\x07" + health_request("lcache.LCache"),
                                   method=HEALTH_CHECK), SERVING)
        self.assertEqual(node.get("Tom"), b"630")  # the peer protocol is unaffected
        node.stop(self)


class LifecycleTest(OpsTest):
    LOAD_MS = 1500
    DRAIN_MS = 1000

    def test_sigterm_not_ready_then_in_flight_requests_finish(self):
        ((node, hport),) = self.start_http_nodes(
            1, source=f"synthetic:16:{self.LOAD_MS}",
            args=["-drain-delay-ms", str(self.DRAIN_MS), "-grace-ms", "5000"])
        self.assertEqual(http_get(hport, "/readyz")[0], 200)
        self.assertEqual(self.health(node), SERVING)

        # Two slow loads in flight, one over gRPC and one over HTTP.
        grpc_call = node.stub.future(request("inflight-grpc"), timeout=10)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            http_call = pool.submit(http_get, hport, "/groups/scores/inflight-http")
            wait_until(lambda: self.stats(hport)["groups"]["scores"]["misses"] == 2, 5,
                       "both loads to start")
            t0 = time.monotonic()
            node.signal(signal.SIGTERM)
            wait_until(lambda: http_get(hport, "/readyz")[0] == 503, 2, "/readyz 503")
            self.assertEqual(http_get(hport, "/healthz")[0], 200, "alive while draining")
            wait_until(lambda: self.health(node) == NOT_SERVING, 2, "health NOT_SERVING")
            self.assertLess(time.monotonic() - t0, self.DRAIN_MS / 1000,
                            "readiness went false only after the drain delay")
            # The loads in flight finish and are answered.
            self.assertEqual(http_call.result(10)[:2], (200, synthetic_value("inflight-http", 16)))
        resp = json.loads(grpc_call.result())
        self.assertEqual(base64.b64decode(resp["value"]), synthetic_value("inflight-grpc", 16))
        node.close_channel()
        rc = node.proc.wait(10)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, node.log())
        self.assertIn("stopped", node.log().splitlines()[-1])
        self.assertGreaterEqual(took, self.DRAIN_MS / 1000 * 0.9, "exited before the drain delay")
        self.assertLess(took, (self.DRAIN_MS + self.LOAD_MS) / 1000 + 2.0, node.log())
        self.assertFalse(self.healthz(hport), "HTTP still served after exit")

    def test_exit_codes_tell_bad_flags_from_a_node_that_cannot_run(self):
        """2: flags that cannot work (a malformed -addr); 1: a node that cannot
        start (its peer or admin address is taken), with the address in the error."""
        def run(addr, *extra):
            return subprocess.run([str(BIN_DIR / "lcache-node"), "-addr", addr,
                                   *TLS_NODE_ARGS, *extra],
                                  capture_output=True, text=True, timeout=10)
        for bad in ("127.0.0.1", "127.0.0.1:"):
            proc = run(bad)
            self.assertEqual(proc.returncode, 2, proc.stderr + proc.stdout)
            self.assertIn("-addr must be host:port", proc.stderr + proc.stdout)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            addr = f"127.0.0.1:{taken.getsockname()[1]}"
            proc = run(addr)
            self.assertEqual(proc.returncode, 1, proc.stderr + proc.stdout)
            self.assertIn(f"cannot serve on {addr}", proc.stderr + proc.stdout)
            proc = run(f"127.0.0.1:{free_port()}", "-http", addr)
            self.assertEqual(proc.returncode, 1, proc.stderr + proc.stdout)


class HotCacheTest(OpsTest):
    """Values fetched from an owner are kept in the asking node's hot cache
    (-hot-promote frequency: on a key's first fetch while the hot cache is
    less than 7/8 full, on its second after that), so a key asked for again
    and again through one node stops crossing the network."""

    def owner_and_asker(self, args):
        (a, ah), (b, bh), (c, ch) = self.start_http_nodes(3, source="synthetic:32", args=args)
        key = next(k for k in (f"hot-{n}" for n in range(1000)) if ring_owner(a.peers, k) == c.addr)
        return (a, ah), (c, ch), key

    def counter(self, hport, name):
        return metric_values(self.metrics(hport))[f'lcache_{name}{{group="scores"}}']

    def test_a_key_asked_for_repeatedly_stops_crossing_the_network(self):
        (a, ah), (c, ch), key = self.owner_and_asker([])
        for _ in range(10):
            self.assertEqual(a.get(key), synthetic_value(key, 32))
        self.assertEqual(self.counter(ch, "server_requests_total"), 1)  # kept: the cache has room
        self.assertEqual(self.counter(ah, "hot_hits_total"), 9)
        self.assertEqual(self.counter(ah, "hot_items"), 1)
        self.assertEqual(self.counter(ah, "hot_capacity_bytes"), 8 << 20)  # -cache-mb 64 / 8
        self.assertEqual(self.counter(ah, "items"), 0)  # the owner keeps the value, not a
        self.assertEqual(self.load_counts(self.nodes), {key: [c.addr]})

    def test_without_the_hot_cache_every_get_crosses(self):
        (a, ah), (c, ch), key = self.owner_and_asker(["-hot-cache-mb", "0"])
        for _ in range(10):
            self.assertEqual(a.get(key), synthetic_value(key, 32))
        self.assertEqual(self.counter(ch, "server_requests_total"), 10)
        self.assertEqual(self.counter(ah, "hot_capacity_bytes"), 0)

    def test_bad_hot_cache_flags_are_refused(self):
        for args, message in (
                (["-hot-cache-mb", "-2"], "-hot-cache-mb must be >= 0"),
                (["-hot-promote", "sometimes"],
                 "-hot-promote must be frequency or random, got sometimes")):
            proc = subprocess.run([str(BIN_DIR / "lcache-node"), "-addr",
                                   f"127.0.0.1:{free_port()}"] + TLS_NODE_ARGS + args,
                                  capture_output=True, text=True, timeout=10)
            self.assertEqual(proc.returncode, 2, f"{args}: {proc.stderr + proc.stdout}")
            self.assertIn(message, proc.stderr + proc.stdout, args)


def http_request(port, method, path, body=None, timeout=10):
    """(status, body bytes) of METHOD http(s)://127.0.0.1:port/path."""
    req = urllib.request.Request(admin_url(port, path), data=body, method=method)
    try:
        with _no_proxy.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class MutationSurfaceTest(OpsTest):
    """Set and Remove through lcache-cli and the admin HTTP API, with bad input
    for each (the guarantees themselves: consistency_test.py)."""

    def cli(self, node, *args):
        return subprocess.run([str(BIN_DIR / "lcache-cli"), *args[:1], "-addr", node.addr,
                               *args[1:], *TRANSPORT_ARGS, *TLS_CLIENT_ARGS],
                              capture_output=True, timeout=20)

    def test_cli_set_get_rm_and_bad_input(self):
        (a, ah), (b, bh), (c, ch) = self.start_http_nodes(3, source="demo")
        owner = next(n for n in (a, b, c) if n.addr == ring_owner(a.peers, "Tom"))
        asker = next(n for n in (a, b, c) if n is not owner)
        for node in (a, b, c):
            self.assertEqual(node.get("Tom"), b"630")
        r = self.cli(asker, "set", "-key", "Tom", "-value", "700", "-ttl-ms", "60000")
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        for node in (a, b, c):
            r = self.cli(node, "get", "-key", "Tom")
            self.assertEqual((r.returncode, r.stdout), (0, b"700"), node.addr)
        r = self.cli(owner, "rm", "-key", "Tom")
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        for node in (a, b, c):
            self.assertEqual(node.get("Tom"), b"630", node.addr)  # the getter's again
        r = self.cli(asker, "rm", "-key", "Nobody")  # not cached anywhere: a success
        self.assertEqual(r.returncode, 0, r.stderr)

        for args, says in (
                (("set", "-key", "", "-value", "v"), EMPTY_KEY),
                (("rm", "-key", ""), EMPTY_KEY),
                (("set", "-key", "k" * 5000, "-value", "v"), "key too long"),
                (("set", "-key", "Tom", "-value", "v", "-ttl-ms", "-5"), "-ttl-ms"),
                (("rm", "-key", "Tom", "-ttl-ms", "5"), "-ttl-ms is for set"),
                (("set", "-group", "nope", "-key", "Tom", "-value", "v"), 'unknown group "nope"'),
                (("set", "-key", "Tom", "-value", "v", "-ttl-ms", str(10 ** 15)),
                 "over the limit"),
                (("put", "-key", "Tom"), "usage: lcache-cli get|set|rm")):
            with self.subTest(args[:2]):
                r = self.cli(asker, *args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(says, r.stderr.decode())
        self.assertEqual(asker.get("Tom"), b"630")
        m = metric_values(self.metrics({a: ah, b: bh, c: ch}[asker]))
        self.assertEqual(m['lcache_sets_total{group="scores"}'], 1)
        self.assertEqual(m['lcache_removes_total{group="scores"}'], 1)
        m = metric_values(self.metrics({a: ah, b: bh, c: ch}[owner]))
        # Two mutations of Tom (and the rm of Nobody if it owns that too), to 2 peers each.
        mutations = 2 + (ring_owner(a.peers, "Nobody") == owner.addr)
        self.assertEqual(m['lcache_invalidations_sent_total{group="scores"}'], 2 * mutations)
        self.stop_all()

    def test_http_put_and_delete(self):
        (a, ah), (b, bh) = self.start_http_nodes(2, source="demo")
        status, body = http_request(ah, "PUT", "/groups/scores/Tom?ttl_ms=60000", b"\x00bytes\n")
        self.assertEqual((status, json.loads(body)), (200, {"unacked": []}))
        for hport in (ah, bh):
            self.assertEqual(http_get(hport, "/groups/scores/Tom")[:2], (200, b"\x00bytes\n"))
        status, body = http_request(bh, "DELETE", "/groups/scores/Tom")
        self.assertEqual((status, json.loads(body)), (200, {"unacked": []}))
        for hport in (ah, bh):
            self.assertEqual(http_get(hport, "/groups/scores/Tom")[:2], (200, b"630"))

        for method, path, body, status, says in (
                ("PUT", "/groups/scores/Tom?ttl_ms=abc", b"v", 400, b"ttl_ms must be an integer"),
                ("PUT", "/groups/scores/Tom?ttl_ms=-1", b"v", 400, b"ttl_ms must be an integer"),
                ("DELETE", "/groups/scores/Tom?ttl_ms=5", None, 400, b"ttl_ms is for PUT"),
                ("PUT", "/groups/nope/Tom", b"v", 404, b'no group "nope"'),
                ("PUT", "/groups/scores/", b"v", 400, EMPTY_KEY.encode()),
                ("DELETE", "/groups/scores/" + "k" * 4097, None, 400, b"key too long"),
                ("PUT", "/groups/scores/Tom", b"v" * (65 << 10), 413, b"")):
            with self.subTest(f"{method} {path[:40]}"):
                got_status, got_body = http_request(ah, method, path, body)
                self.assertEqual(got_status, status, got_body)
                self.assertIn(says, got_body)
        self.assertEqual(http_get(bh, "/groups/scores/Tom")[:2], (200, b"630"))
        self.stop_all()


class MtlsModeTest(OpsTest):
    """Under --mtls, the mode is really on: the peer port and the admin
    listener refuse plaintext, the peer port refuses a TLS client without a
    certificate, and the admin listener opens only the probes to one."""

    def test_clients_without_the_certificate_are_refused(self):
        if MTLS is None:
            self.skipTest("checks the --mtls mode (run with --mtls)")
        ((node, hport),) = self.start_http_nodes(1, source="demo")
        self.assertEqual(node.get("Tom"), b"630")
        without_cert = grpc.ssl_channel_credentials(root_certificates=MTLS.ca.read_bytes())
        for name, channel in (
                ("plaintext", grpc.insecure_channel(node.addr,
                                                    options=[("grpc.enable_http_proxy", 0)])),
                ("TLS without a client certificate",
                 grpc.secure_channel(node.addr, without_cert,
                                     options=[("grpc.enable_http_proxy", 0)]))):
            with self.subTest(name), channel:
                with self.assertRaises(grpc.RpcError) as e:
                    channel.unary_unary(GET)(request("Tom"), timeout=2)
                self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE, name)
        with self.assertRaises((OSError, http.client.HTTPException)):
            _no_proxy.open(f"http://127.0.0.1:{hport}/healthz", timeout=2).read()
        no_cert = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=MTLS.ca)))
        for path, status in (("/healthz", 200), ("/readyz", 200), ("/metrics", 401),
                             ("/stats", 401), ("/groups/scores/Tom", 401)):
            with self.subTest(path):
                try:
                    with no_cert.open(admin_url(hport, path), timeout=5) as r:
                        got = r.status
                except urllib.error.HTTPError as e:
                    got = e.code
                self.assertEqual(got, status, f"{path} without a client certificate")
        self.assertEqual(http_get(hport, "/groups/scores/Tom")[:2], (200, b"630"))
        node.stop(self)


class MtlsFiles:
    """--mtls: a CA, the nodes' certificate and a client's, made by openssl
    (tls_test.Certs) in a temporary directory removed at exit."""

    def __init__(self):
        # tls_test imports this module as cluster_test: let that be this
        # very module when it runs as the main script, not a second copy.
        sys.modules.setdefault("cluster_test", sys.modules[__name__])
        if str(HERE) not in sys.path:
            sys.path.insert(0, str(HERE))
        from tls_test import Certs
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="lcache-cluster-mtls-"))
        atexit.register(shutil.rmtree, self.dir, True)
        certs = Certs(self.dir, "ca")
        self.ca = certs.ca
        self.node_cert, self.node_key = certs.issue("node", "IP:127.0.0.1,DNS:localhost")
        self.client_cert, self.client_key = certs.issue("client", "DNS:lcache-cluster-test")


def enable_mtls():
    """The --mtls mode (see the module's docstring): every node the harness
    starts serves mTLS on both its ports, and every client of the harness
    (Node's channel, the admin HTTP helpers, lcache-cli) shows the client
    certificate."""
    global MTLS, CLIENT_CREDENTIALS, ADMIN_SCHEME, _no_proxy
    MTLS = files = MtlsFiles()
    TLS_NODE_ARGS[:] = ["-tls-cert", str(files.node_cert), "-tls-key", str(files.node_key),
                        "-tls-ca", str(files.ca), "-tls-client-auth", "require",
                        "-http-tls", "mtls"]
    TLS_CLIENT_ARGS[:] = ["-tls-ca", str(files.ca), "-tls-cert", str(files.client_cert),
                          "-tls-key", str(files.client_key)]
    CLIENT_CREDENTIALS = grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(), private_key=files.client_key.read_bytes(),
        certificate_chain=files.client_cert.read_bytes())
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(str(files.client_cert), str(files.client_key))
    ADMIN_SCHEME = "https"
    _no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                            urllib.request.HTTPSHandler(context=context))


def run_main(doc, name, add_arguments=None, configure=None):
    """The main of every integration suite here: --bin DIR (where
    lcache-node is), the suite's own arguments, then unittest's; every node
    started is killed at the end, whatever happened."""
    global BIN_DIR
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--bin", required=True, help="directory with lcache-node")
    if add_arguments:
        add_arguments(parser)
    args, rest = parser.parse_known_args()
    BIN_DIR = pathlib.Path(args.bin).resolve()
    if not (BIN_DIR / "lcache-node").is_file():
        sys.exit(f"{name}: no lcache-node in {BIN_DIR}")
    if configure:
        configure(args)
    try:
        unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
    finally:
        _kill_all()


def main():
    def add_arguments(parser):
        parser.add_argument("--transport", default="lean", choices=("grpc", "lean"),
                            help="the nodes' transport (-transport)")
        parser.add_argument("--mtls", action="store_true",
                            help="every node serves mTLS (peer port and admin HTTP), every "
                                 "client shows a certificate of the test CA")

    def configure(args):
        global TRANSPORT_ARGS
        TRANSPORT_ARGS = ["-transport", args.transport]
        if args.mtls:
            enable_mtls()

    run_main(__doc__, "cluster_test", add_arguments, configure)


if __name__ == "__main__":
    main()
