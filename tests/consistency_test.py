#!/usr/bin/python3
"""Integration tests: Set and Remove across real nodes, under a checker.

Three lcache-node processes (hot cache on) serve a changing origin: the
`-source dir:ORIGIN:20` getter reads the file of a key, 20 ms late, so loads
are in flight while the keys change. Writers change a key as a write-through
user does: write version N to the origin, then Set (the value "key@N") or
Remove the key through a random node; one mutation per key at a time,
several keys at once. Readers on every node Get keys all along. The checker
records when each mutation returned and fails on any read that started
after a Set or Remove of its key returned and saw an older version: a copy
an invalidation missed, or a racing load that stored an old value.

Scenarios: static peers; one node SIGKILLed halfway (its copies die with
it; mutations of the keys it owns fail, the rest go on); etcd discovery;
etcd with a node SIGKILLed halfway (its keys move to live owners when its
lease expires, and change again there); etcd with a node restarted
halfway (SIGTERM: it hands its entries off, then comes back and peeks at
them) and with a fourth node joining halfway (it peeks at the previous
owners' copies), docs/PROTOCOL.md section 8;
a stand-in for a Go node in the ring (it answers Get only, so the keys it
owns cannot change and the others' invalidations are not acknowledged by
it). CI runs each for a few seconds; --seconds N runs them longer.

Run: /usr/bin/python3 tests/consistency_test.py --bin build/bin [--seconds N]
"""

import base64
import collections
import json
import os
import pathlib
import random
import re
import sys
import threading
import time

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_test as ct  # noqa: E402  (the node harness)
import etcd_test  # noqa: E402  (the etcd harness)

SET = "/lcache.LCache/Set"
REMOVE = "/lcache.LCache/Remove"
SECONDS = 6.0  # per scenario; main() sets it from --seconds
KEYS = [f"ck-{i}" for i in range(12)]


class Origin:
    """The data the getters read: one file per key, named by its bytes in hex."""

    def __init__(self, root):
        self.dir = pathlib.Path(root) / "origin"
        self.dir.mkdir()

    def write(self, key, value):
        path = self.dir / key.encode().hex()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(value)
        os.replace(tmp, path)  # a reader sees the old file or the new one


def version_of(value):
    key, _, version = value.partition(b"@")
    return int(version) if version.isdigit() else None


class Checker:
    """Readers and writers over `nodes`; see the module docstring."""

    def __init__(self, nodes, origin, keys, readers_per_node=2, writers=2):
        self.nodes = list(nodes)
        self.alive = list(nodes)
        self.origin = origin
        self.keys = list(keys)
        self.readers_per_node = readers_per_node
        self.writers = writers
        self.lock = threading.Lock()
        self.floor = {k: 0 for k in self.keys}  # version of the last mutation that returned OK
        self.key_locks = {k: threading.Lock() for k in self.keys}
        self.next_version = 1
        self.stop = threading.Event()
        self.reads = 0
        self.read_errors = collections.Counter()
        self.stale = []  # (key, version seen, floor, node)
        self.mutations = collections.Counter()  # ("set"/"remove", "ok" or grpc code)
        self.unacked = collections.Counter()  # address -> mutations it did not acknowledge
        self.last_ok = {}  # key -> when a mutation of it last returned OK (monotonic)
        self.late_threads = []  # readers of nodes that joined or came back

    def start_versions(self):
        """Writes version 0 of every key, so the first loads find it."""
        with self.lock:
            for key in self.keys:
                self.origin.write(key, f"{key}@0".encode())

    def reader(self, node):
        rng = random.Random()
        while not self.stop.is_set():
            if node not in self.alive:
                return
            key = rng.choice(self.keys)
            with self.lock:
                floor = self.floor[key]
            try:
                value = node.get(key, timeout=3.0)
            except grpc.RpcError as e:
                self.read_errors[(node.addr, e.code().name)] += 1
                continue
            except AssertionError as e:  # an in-band error
                self.read_errors[(node.addr, str(e))] += 1
                continue
            version = version_of(value)
            with self.lock:
                self.reads += 1
                if version is None or version < floor:
                    self.stale.append((key, value, floor, node.addr))

    def writer(self):
        rng = random.Random()
        while not self.stop.is_set():
            key = rng.choice(self.keys)
            with self.key_locks[key]:
                with self.lock:
                    version = self.next_version
                    self.next_version += 1
                value = f"{key}@{version}".encode()
                self.origin.write(key, value)
                node = rng.choice(self.alive)
                kind = rng.choice(("set", "remove"))
                if kind == "set":
                    body = {"group": ct.GROUP, "key": key,
                            "value": base64.b64encode(value).decode()}
                else:
                    body = {"group": ct.GROUP, "key": key}
                try:
                    resp = json.loads(node.call(json.dumps(body).encode(), timeout=5.0,
                                                method=SET if kind == "set" else REMOVE))
                except grpc.RpcError as e:
                    self.mutations[(kind, e.code().name)] += 1
                    continue
                if "err" in resp:
                    self.mutations[(kind, "err: " + resp["err"])] += 1
                    continue
                with self.lock:
                    self.floor[key] = max(self.floor[key], version)
                    self.last_ok[key] = time.monotonic()
                    self.mutations[(kind, "ok")] += 1
                    for address in resp.get("unacked", []):
                        self.unacked[address] += 1

    def add_node(self, node):
        """Reads through `node` too from now on (it joined, or is back)."""
        with self.lock:
            if node not in self.alive:
                self.alive.append(node)
        for _ in range(self.readers_per_node):
            t = threading.Thread(target=self.reader, args=(node,))
            self.late_threads.append(t)
            t.start()

    def run(self, seconds, halfway=None):
        """Runs for `seconds`; `halfway()` is called in the middle."""
        self.start_versions()
        threads = [threading.Thread(target=self.reader, args=(node,))
                   for node in self.nodes for _ in range(self.readers_per_node)]
        threads += [threading.Thread(target=self.writer) for _ in range(self.writers)]
        for t in threads:
            t.start()
        try:
            time.sleep(seconds / 2)  # the scenario's length, not a synchronisation
            if halfway:
                halfway()
            time.sleep(seconds / 2)
        finally:
            self.stop.set()
            for t in threads + self.late_threads:
                t.join(30)

    def summary(self):
        return (f"{self.reads} reads, read errors {dict(self.read_errors)}, "
                f"mutations {dict(self.mutations)}, unacknowledged by {dict(self.unacked)}, "
                f"stale reads {self.stale[:10]}")


def etcd_current_view(node):
    """The peer set of the node's current run (a restarted node's earlier
    runs logged peer sets it does not have yet)."""
    lines = re.findall(r"peers: added \[[^\]]*\] removed \[[^\]]*\]; now \d+: \[([^\]]*)\]",
                       node.log_path.read_text(errors="replace"))
    return [a for a in lines[-1].split(",") if a] if lines else None


class ConsistencyTest(ct.ClusterTest):
    SOURCE_DELAY_MS = 20

    def setUp(self):
        super().setUp()
        self.origin = Origin(self.logdir)

    def source(self):
        return f"dir:{self.origin.dir}:{self.SOURCE_DELAY_MS}"

    def assert_consistent(self, checker, min_ok=50):
        summary = checker.summary()
        self.assertEqual(checker.stale, [], summary)
        ok = checker.mutations[("set", "ok")] + checker.mutations[("remove", "ok")]
        self.assertGreaterEqual(ok, min_ok, summary)
        self.assertGreaterEqual(checker.reads, 10 * min_ok, summary)
        print(f"\n  {self.id().split('.')[-1]}: {summary}", file=sys.stderr)

    def test_static_peers(self):
        nodes = self.start_cluster(3, source=self.source())
        checker = Checker(nodes, self.origin, KEYS)
        checker.run(SECONDS)
        self.assert_consistent(checker)
        self.assertEqual(checker.read_errors, collections.Counter(), checker.summary())
        self.assertEqual(checker.unacked, collections.Counter(), checker.summary())
        bad = {k: n for k, n in checker.mutations.items() if k[1] != "ok"}
        self.assertEqual(bad, {}, checker.summary())

    def test_a_node_killed_halfway(self):
        nodes = self.start_cluster(3, source=self.source())
        # The node owning most of the checker's keys: its keys' mutations
        # must fail (a fixed node may own none of a dozen).
        ring = nodes[0].peers
        victim = max(nodes, key=lambda n: sum(ct.ring_owner(ring, k) == n.addr for k in KEYS))
        checker = Checker(nodes, self.origin, KEYS)

        def kill():
            checker.alive.remove(victim)
            victim.kill()

        checker.run(SECONDS, halfway=kill)
        self.assert_consistent(checker, min_ok=30)
        # The survivors went on: reads through them never failed.
        survivors_errors = {k: n for k, n in checker.read_errors.items()
                            if k[0] != victim.addr}
        self.assertEqual(survivors_errors, {}, checker.summary())
        # Mutations of the victim's keys fail, naming it; the others' are
        # not acknowledged by it.
        failed = sum(n for k, n in checker.mutations.items() if k[1] != "ok")
        self.assertGreater(failed, 0, checker.summary())
        self.assertGreater(checker.unacked[victim.addr], 0, checker.summary())

    def start_etcd_nodes(self, n):
        etcd = etcd_test.Etcd(self.logdir)
        self.addCleanup(etcd.stop)
        etcd.start()
        self.etcd = etcd
        nodes = []
        for _ in range(n):
            node = ct.Node(self.logdir, ct.free_port(), source=self.source(),
                           args=["-etcd", etcd.endpoint, "-etcd-lease-ttl-s", str(etcd_test.TTL_S)])
            self.nodes.append(node)
            node.start()
            nodes.append(node)
        addrs = sorted(node.addr for node in nodes)
        for node in nodes:
            ct.wait_until(lambda: etcd_test.view(node) == addrs, 10, f"{node.addr} sees all")
        return nodes

    def test_etcd_discovery(self):
        nodes = self.start_etcd_nodes(3)
        checker = Checker(nodes, self.origin, KEYS)
        checker.run(SECONDS)
        self.assert_consistent(checker)
        self.assertEqual(checker.read_errors, collections.Counter(), checker.summary())
        self.assertEqual(checker.unacked, collections.Counter(), checker.summary())

    def wait_views(self, nodes):
        addrs = sorted(n.addr for n in nodes)
        for node in nodes:
            ct.wait_until(lambda: etcd_current_view(node) == addrs, 10, f"{node.addr} sees {addrs}")

    def test_etcd_a_node_restarted_halfway(self):
        # SIGTERM: the node hands its entries to their heirs while writers
        # change the keys, the others drop it, it starts again and peeks at
        # the heirs (docs/PROTOCOL.md, section 8): no value a completed Set or
        # Remove replaced may come back through either.
        nodes = self.start_etcd_nodes(3)
        victim = nodes[2]
        checker = Checker(nodes, self.origin, KEYS)

        def restart():
            with checker.lock:
                checker.alive.remove(victim)
            victim.stop(self, within=8)
            self.wait_views(nodes[:2])
            victim.start()
            self.wait_views(nodes)
            checker.add_node(victim)

        checker.run(max(SECONDS, 8), halfway=restart)
        self.assert_consistent(checker, min_ok=30)
        self.assertRegex(victim.log(), r"handed off \d+ entries")

    def test_etcd_a_node_joins_halfway(self):
        nodes = self.start_etcd_nodes(3)
        checker = Checker(nodes, self.origin, KEYS)
        joined = []

        def join():
            node = ct.Node(self.logdir, ct.free_port(), source=self.source(),
                           args=["-etcd", self.etcd.endpoint, "-etcd-lease-ttl-s",
                                 str(etcd_test.TTL_S)])
            self.nodes.append(node)
            node.start()
            joined.append(node)
            self.wait_views(nodes + joined)
            checker.add_node(node)

        checker.run(max(SECONDS, 8), halfway=join)
        self.assert_consistent(checker, min_ok=30)
        self.assertEqual(checker.read_errors, collections.Counter(), checker.summary())

    def test_etcd_a_node_killed_halfway(self):
        # After the kill, the victim's lease expires (TTL_S) and every ring
        # drops it: its keys move to live owners and can change again there.
        nodes = self.start_etcd_nodes(3)
        ring = sorted(n.addr for n in nodes)
        # The victim: the node owning most of the checker's keys (with random
        # ports a given node may own none of a dozen).
        victim = max(nodes, key=lambda n: sum(ct.ring_owner(ring, k) == n.addr for k in KEYS))
        nodes.remove(victim)
        nodes.append(victim)  # the survivors first, as the checks below expect
        victims_keys = [k for k in KEYS if ct.ring_owner(ring, k) == victim.addr]
        self.assertTrue(victims_keys, ring)
        checker = Checker(nodes, self.origin, KEYS)
        killed = {}

        def kill():
            checker.alive.remove(victim)
            victim.kill()
            killed["at"] = time.monotonic()

        checker.run(max(SECONDS, 2 * (etcd_test.TTL_S + 3)), halfway=kill)
        self.assert_consistent(checker, min_ok=30)
        survivors_errors = {k: n for k, n in checker.read_errors.items() if k[0] != victim.addr}
        self.assertEqual(survivors_errors, {}, checker.summary())
        survivors = sorted(n.addr for n in nodes if n is not victim)
        for node in nodes[:2]:
            self.assertEqual(etcd_test.view(node), survivors, checker.summary())
        changed_after = [k for k in victims_keys if checker.last_ok.get(k, 0) > killed["at"]]
        self.assertTrue(changed_after, f"no mutation of {victims_keys} succeeded after the kill; "
                                       f"{checker.summary()}")

    def test_a_go_node_in_the_ring(self):
        go = GoStandIn(self.origin)
        self.addCleanup(go.stop)
        nodes = self.start_cluster(3, source=self.source(),
                                   peers_of=lambda addrs, i: addrs + [go.addr])
        ring = nodes[0].peers
        go_keys = [k for k in (f"go-{i}" for i in range(200)) if ct.ring_owner(ring, k) == go.addr]
        # The checker's keys among those the C++ nodes own: with random ports
        # the Go node's share of a fixed dozen can be most of it.
        ours = [k for k in (f"ck-{i}" for i in range(200))
                if ct.ring_owner(ring, k) != go.addr][:len(KEYS)]
        self.assertTrue(go_keys and len(ours) == len(KEYS), ring)

        # A key the Go node owns: a clear error naming it, nothing changed.
        key = go_keys[0]
        self.origin.write(key, f"{key}@0".encode())
        self.assertEqual(nodes[0].get(key), f"{key}@0".encode())
        for node in nodes:
            for method, body in ((SET, {"group": ct.GROUP, "key": key, "value": "eA=="}),
                                 (REMOVE, {"group": ct.GROUP, "key": key})):
                with self.assertRaises(grpc.RpcError) as caught:
                    node.call(json.dumps(body).encode(), method=method)
                self.assertEqual(caught.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
                self.assertIn(go.addr, caught.exception.details())
        self.assertEqual(nodes[1].get(key), f"{key}@0".encode())

        checker = Checker(nodes, self.origin, ours)
        checker.run(SECONDS)
        self.assert_consistent(checker)
        self.assertEqual(checker.read_errors, collections.Counter(), checker.summary())
        ok = checker.mutations[("set", "ok")] + checker.mutations[("remove", "ok")]
        self.assertEqual(dict(checker.unacked), {go.addr: ok}, checker.summary())


class GoStandIn:
    """A node of the Go program as the ring sees it: it answers Get by loading
    from the origin (as the owner of every key it is asked for) and knows no
    other method, so gRPC answers Set, Remove and Invalidate UNIMPLEMENTED."""

    def __init__(self, origin):
        self.origin = origin
        self.server, self.addr = ct.serve_get_only(self._get)

    def _get(self, body, context):
        key = json.loads(body)["key"]
        path = self.origin.dir / key.encode().hex()
        if not path.exists():
            return json.dumps({"err": ct.NOT_FOUND}).encode()
        value = base64.b64encode(path.read_bytes()).decode()
        return json.dumps({"value": value}, separators=(",", ":")).encode()

    def stop(self):
        self.server.stop(0)


def main():
    def add_arguments(parser):
        parser.add_argument("--seconds", type=float, default=SECONDS,
                            help="length of each scenario (default %(default)s)")
        parser.add_argument("--transport", default="lean", choices=("grpc", "lean"),
                            help="the nodes' transport (-transport)")

    def configure(args):
        global SECONDS
        SECONDS = args.seconds
        ct.TRANSPORT_ARGS[:] = ["-transport", args.transport]

    ct.run_main(__doc__, "consistency_test", add_arguments, configure)


if __name__ == "__main__":
    main()
