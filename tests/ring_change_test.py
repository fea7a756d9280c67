#!/usr/bin/python3
"""Integration tests: a cluster that stays warm through ring changes.

Real lcache-node processes register in a real etcd (Debian's, on free
ports, in a temp dir). Every test reads a set of keys through the nodes in
turn, changes the ring, reads them all again, and counts the loads from the
nodes' logs (`[getter] load key=KEY`, every run of every node): a key that
went cold is loaded again. Each scenario also runs with the features off
(`-warmup 0 -handoff-mb 0`), where the same reads must load again, so the
assertions can fail.

- join: a fourth node joins a warm cluster; it peeks at the previous owners'
  copies (docs/PROTOCOL.md, section 8).
- rolling restart: each node in turn gets SIGTERM (it hands its entries to
  their heirs before it deregisters), the others drop it, it starts again
  and peeks at the heirs.
- SIGKILL: with `-replicas 2` each key is also on its owner's successor, so
  the dead node's keys are answered from replicas, first by the stand-ins
  while the others still list it, then by the heirs once its lease expired
  (docs/PROTOCOL.md, section 9); without, they are loaded again.
- a stand-in for a Go node in a static ring: it answers Get only, like the Go
  program; the C++ nodes send it at most one Peek each and at most one
  Handoff per departing node, answered UNIMPLEMENTED, and serve every value
  right.

Run: /usr/bin/python3 tests/ring_change_test.py --bin build/bin [--transport grpc]
"""

import base64
import collections
import concurrent.futures
import json
import pathlib
import re
import sys
import threading

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_test as ct  # noqa: E402  (the node harness)
import etcd_test  # noqa: E402  (the etcd harness)

KEYS = [f"warm-{i}" for i in range(240)]
# No hot cache in the join and restart tests: a non-owner keeps a hot copy
# of what it fetched (first fetches included) and would answer some moved
# keys, so neither the warm figure (peeks, hand-offs) nor the cold one
# would be what it says.
WARM = ["-hot-cache-mb", "0"]
# Without the mechanisms that keep a cluster warm: no peeks at a previous
# owner, no hand-off.
COLD = WARM + ["-warmup", "0", "-handoff-mb", "0"]


def current_view(node):
    """etcd_test.view over the node's current run only: a restarted node's
    earlier runs logged peer sets it does not have yet."""
    lines = re.findall(r"peers: added \[[^\]]*\] removed \[[^\]]*\]; now \d+: \[([^\]]*)\]",
                       node.log_path.read_text(errors="replace"))
    return [a for a in lines[-1].split(",") if a] if lines else None


class RingChangeTest(etcd_test.EtcdTest):
    def assert_views(self, nodes, want, within, what):
        want = sorted(want)
        for node in nodes:
            ct.wait_until(lambda: current_view(node) == want, within,
                          f"{node.addr}: {what} (sees {current_view(node)}, want {want})")

    def start_etcd_node(self, args=(), node=None):
        node = node or ct.Node(self.logdir, ct.free_port(),
                               args=self.etcd_args() + list(args))
        if node not in self.nodes:
            self.nodes.append(node)
        node.start()
        return node

    def read_all(self, nodes):
        """Reads every key once, through `nodes` in turn, checking values."""
        for i, key in enumerate(KEYS):
            node = nodes[i % len(nodes)]
            self.assertEqual(node.get(key), ct.synthetic_value(key, 64), f"{key} via {node.addr}")

    def loads(self, nodes):
        return sum(len(n.loads()) for n in nodes)

    def warm_cluster(self, n, args):
        nodes = [self.start_etcd_node(args) for _ in range(n)]
        self.assert_views(nodes, [x.addr for x in nodes], 10, "all registered")
        self.read_all(nodes)
        self.assertEqual(self.load_counts(nodes), {k: [ct.ring_owner(sorted(x.addr for x in nodes), k)]
                                                   for k in KEYS})
        return nodes

    # -- join --------------------------------------------------------------

    def join(self, args):
        """Loads that re-reading every key costs after a fourth node joins."""
        nodes = self.warm_cluster(3, args)
        nodes.append(self.start_etcd_node(args))
        self.assert_views(nodes, [x.addr for x in nodes], 10, "the fourth joined")
        before = self.loads(nodes)
        self.read_all(nodes)
        return self.loads(nodes) - before, nodes

    def test_a_joining_node_peeks_instead_of_loading(self):
        reloaded, nodes = self.join(WARM)
        self.assertEqual(reloaded, 0, self.dump_logs(nodes))

    def test_without_warm_up_a_joining_node_loads_its_keys_again(self):
        reloaded, nodes = self.join(COLD)
        ring = sorted(x.addr for x in nodes)
        moved = [k for k in KEYS if ct.ring_owner(ring, k) == nodes[3].addr]
        self.assertGreater(len(moved), 10)
        # Read through a node that held it before, a moved key is that
        # node's copy; through any other, it is loaded by the new owner.
        self.assertGreater(reloaded, len(moved) // 2)
        self.assertLessEqual(reloaded, len(moved))

    # -- rolling restart -----------------------------------------------------

    def rolling_restart(self, args):
        """Loads that a rolling restart costs, reading every key between steps."""
        nodes = self.warm_cluster(3, args)
        before = self.loads(nodes)
        for node in nodes:
            node.stop(self, within=5)
            rest = [x for x in nodes if x is not node]
            self.assert_views(rest, [x.addr for x in rest], 10, f"{node.addr} left")
            self.read_all(rest)
            self.start_etcd_node(node=node)
            self.assert_views(nodes, [x.addr for x in nodes], 10, f"{node.addr} back")
            self.read_all(nodes)
        return self.loads(nodes) - before, nodes

    def test_a_rolling_restart_loads_nothing_again(self):
        reloaded, nodes = self.rolling_restart(WARM)
        self.assertEqual(reloaded, 0, self.dump_logs(nodes))
        for node in nodes:
            self.assertRegex(node.log(), r"handed off \d+ entries")

    def test_without_hand_off_a_rolling_restart_loads_again(self):
        reloaded, _ = self.rolling_restart(COLD)
        self.assertGreaterEqual(reloaded, len(KEYS) // 2)


    # -- crash ------------------------------------------------------------------

    def stats_of(self, node):
        status, body, _ = ct.http_get(node.hport, "/stats")
        self.assertEqual(status, 200)
        return json.loads(body)["groups"]["scores"]

    def kill_one(self, args):
        """Loads that re-reading every key costs after one of three nodes is
        SIGKILLed: (while the others still list it, once they dropped it)."""
        nodes = []
        for _ in range(3):
            node = ct.Node(self.logdir, ct.free_port(), args=self.etcd_args() + list(args))
            node.hport = ct.free_port()
            node.args += ["-http", f"127.0.0.1:{node.hport}"]
            nodes.append(self.start_etcd_node(node=node))
        self.assert_views(nodes, [x.addr for x in nodes], 10, "all registered")
        self.read_all(nodes)
        if "-replicas" in args:
            # A push is not waited for by the load it follows.
            # (More than once for a key loaded while a re-replication after
            # a ring change of the start ran.)
            ct.wait_until(lambda: sum(self.stats_of(n)["replicas_kept"] for n in nodes)
                          >= len(KEYS), 10, "every key's replica kept")
        ring = sorted(x.addr for x in nodes)
        dead = nodes[1]
        owned = [k for k in KEYS if ct.ring_owner(ring, k) == dead.addr]
        self.assertGreater(len(owned), 20)
        dead.kill()
        rest = [nodes[0], nodes[2]]
        before = self.loads(rest)
        self.read_all(rest)  # the lease has not expired: the others still list it
        while_listed = self.loads(rest) - before
        self.assert_views(rest, [x.addr for x in rest], 3 * etcd_test.TTL_S, "the dead one dropped")
        # Through the other node than before: the one that asked first may
        # have kept a copy of its own (a fallback load).
        before = self.loads(rest)
        self.read_all(rest[::-1])
        return while_listed, self.loads(rest) - before, owned, rest

    # No hot cache: a stand-in's answer kept there would hide the heir's.
    def test_a_killed_nodes_keys_are_answered_from_replicas(self):
        while_listed, after, owned, rest = self.kill_one(["-replicas", "2", "-hot-cache-mb", "0"])
        self.assertEqual((while_listed, after), (0, 0), self.dump_logs(rest))
        stats = [self.stats_of(n) for n in rest]
        # Each key answered by a stand-in while the owner was listed...
        self.assertGreaterEqual(sum(s["replica_hits"] for s in stats), len(owned))
        # ...and moved into its heir's store once the owner was dropped (by
        # the re-replication after the ring change, or by the first read).
        self.assertEqual(sum(s["replicas_promoted"] for s in stats), len(owned))

    def test_without_replicas_a_killed_nodes_keys_are_loaded_again(self):
        while_listed, after, owned, _ = self.kill_one(["-hot-cache-mb", "0"])
        # Each asker loads the dead node's keys itself; the heir loads again
        # those it had not asked for itself.
        self.assertEqual(while_listed, len(owned))
        self.assertGreater(after, 0)


class GoStandIn:
    """Like a node of the Go program: serves /lcache.LCache/Get (the
    synthetic value of 64 bytes, as `-source synthetic:64` would) and answers
    every other method UNIMPLEMENTED, counting the calls per method."""

    def __init__(self):
        self.calls = collections.Counter()
        self.lock = threading.Lock()
        outer = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                with outer.lock:
                    outer.calls[details.method] += 1
                if details.method == ct.GET:
                    return grpc.unary_unary_rpc_method_handler(outer._get)
                return None  # grpc answers UNIMPLEMENTED

        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(8))
        self.server.add_generic_rpc_handlers((Handler(),))
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{port}"
        self.server.start()

    def _get(self, body, context):
        key = json.loads(body)["key"]
        value = base64.b64encode(ct.synthetic_value(key, 64)).decode()
        return json.dumps({"value": value}, separators=(",", ":")).encode()

    def count(self, method):
        with self.lock:
            return self.calls[method]

    def stop(self):
        self.server.stop(0)


class GoNodeInTheRingTest(ct.ClusterTest):
    def test_a_go_node_gets_one_peek_and_one_handoff_at_most(self):
        self.go_node_in_the_ring([])

    def test_with_replicas_a_go_node_gets_one_replicate_at_most(self):
        go = self.go_node_in_the_ring(["-replicas", "2"])
        self.assertLessEqual(go.count("/lcache.LCache/Replicate"), 2)
        self.assertGreater(go.count("/lcache.LCache/Replicate"), 0)  # it holds some replicas

    def go_node_in_the_ring(self, args):
        go = GoStandIn()
        self.addCleanup(go.stop)
        # Two C++ nodes and the Go node on one static ring: each C++ node's
        # first ring makes the Go node the previous owner of some keys.
        ports = [ct.free_port(), ct.free_port()]
        ring = [f"127.0.0.1:{p}" for p in ports] + [go.addr]
        nodes = [ct.Node(self.logdir, p, peers=ring, args=args) for p in ports]
        self.nodes += nodes
        for node in nodes:
            node.start()
        for i, key in enumerate(KEYS):
            self.assertEqual(nodes[i % 2].get(key), ct.synthetic_value(key, 64), key)
        self.assertLessEqual(go.count("/lcache.LCache/Peek"), 2)
        self.assertGreater(go.count("/lcache.LCache/Peek"), 0)  # there were keys to peek for
        # Each stop hands entries off: the Go node is the heir of some.
        for node in nodes:
            node.stop(self, within=5)
        self.assertLessEqual(go.count("/lcache.LCache/Handoff"), 2)
        self.assertGreater(go.count("/lcache.LCache/Handoff"), 0)
        unknown = set(go.calls) - {ct.GET, "/lcache.LCache/Peek", "/lcache.LCache/Handoff",
                                   "/lcache.LCache/Replicate"}
        self.assertEqual(unknown, set(), go.calls)
        return go


def main():
    def add_arguments(parser):
        parser.add_argument("--transport", default="lean", choices=("grpc", "lean"),
                            help="the nodes' transport (-transport)")

    def configure(args):
        ct.TRANSPORT_ARGS[:] = ["-transport", args.transport]

    ct.run_main(__doc__, "ring_change_test", add_arguments, configure)


if __name__ == "__main__":
    main()
