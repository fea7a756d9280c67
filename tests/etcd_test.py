#!/usr/bin/python3
"""Integration tests: discovery through a real etcd.

Each test starts Debian's `etcd` (3.4) on free loopback ports with its own
data directory, and real lcache-node processes with -etcd. A node's peer set
is read from its log: every change is logged as
`peers: added [..] removed [..]; now N: [a,b,c]`, and the last such line is
the set its ring holds. The test changes membership with etcdctl (as an
operator or a Go node would) or with etcd's JSON gateway when a burst must
fit in 100 ms. Nothing waits by sleeping except the one scenario that is a
duration (etcd down for 20 s), and it serves requests all along.

Run: /usr/bin/python3 tests/etcd_test.py --bin build/bin [unittest args]
"""

import base64
import http.client
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_test as ct  # noqa: E402  (the node harness)

TTL_S = 3  # the nodes' lease TTL here: etcd's minimum is about 2 s
PREFIX = "lcache/"


class Etcd:
    """One etcd member on 127.0.0.1: free ports, a data dir of its own."""

    def __init__(self, workdir, extra_args=(), scheme="http"):
        self.workdir = pathlib.Path(workdir)
        self.data_dir = self.workdir / "etcd-data"
        self.client_port = ct.free_port()
        self.peer_port = ct.free_port()
        self.endpoint = f"127.0.0.1:{self.client_port}"
        self.scheme = scheme
        self.extra_args = list(extra_args)
        self.proc = None
        self.runs = 0
        self.ctl_args = []  # extra etcdctl flags (TLS, user)

    def start(self, timeout=15.0):
        self.runs += 1
        self.log_path = self.workdir / f"etcd-{self.runs}.log"
        url = f"{self.scheme}://{self.endpoint}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = ["etcd", "--name", "test", "--data-dir", str(self.data_dir),
               "--listen-client-urls", url, "--advertise-client-urls", url,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"test={peer}", "--log-level", "warn",
               "--logger", "zap"] + self.extra_args
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        ct._live.append(self.proc)
        ct.wait_until(lambda: self.proc.poll() is not None or self._healthy(), timeout,
                      f"etcd on {self.endpoint} to be healthy")
        if self.proc.poll() is not None:
            raise AssertionError(f"etcd exited:\n{self.log_path.read_text()}")
        return self

    def _healthy(self):
        r = subprocess.run(self.ctl("endpoint", "health"), capture_output=True)
        return r.returncode == 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def wipe(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def ctl(self, *args):
        return ["etcdctl", "--endpoints", f"{self.scheme}://{self.endpoint}",
                "--dial-timeout", "2s", "--command-timeout", "3s"] + self.ctl_args + list(args)

    def run_ctl(self, *args):
        r = subprocess.run(self.ctl(*args), capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)} failed: {r.stderr}")
        return r.stdout

    def addresses(self):
        """What etcd lists under the prefix: the addresses, in key order."""
        keys = self.run_ctl("get", "--prefix", "--keys-only", PREFIX).split()
        return [k[len(PREFIX):] for k in keys]


def view(node):
    """The node's current peer set, from its last `peers:` log line."""
    lines = re.findall(r"peers: added \[[^\]]*\] removed \[[^\]]*\]; now \d+: \[([^\]]*)\]",
                       node.log())
    if not lines:
        return None
    return [a for a in lines[-1].split(",") if a]


class EtcdTest(ct.ClusterTest):
    def setUp(self):
        super().setUp()
        self.etcd = Etcd(self.logdir)
        self.addCleanup(self.etcd.stop)
        self.etcd.start()

    def etcd_args(self, etcd=None):
        etcd = etcd or self.etcd
        return ["-etcd", etcd.endpoint, "-etcd-lease-ttl-s", str(TTL_S)]

    def start_nodes(self, n, args=None):
        """n nodes with -etcd (no -peers), waiting until each has registered."""
        nodes = []
        for _ in range(n):
            node = ct.Node(self.logdir, ct.free_port(), args=args or self.etcd_args())
            self.nodes.append(node)
            node.start()
            ct.wait_until(lambda: "etcd: registered" in node.log(), 10, f"{node.addr} registered")
            nodes.append(node)
        return nodes

    def assert_views(self, nodes, want, within, what):
        """Every node's peer set becomes exactly `want` (in key order) within `within` s."""
        want = sorted(want)
        t0 = time.monotonic()
        for node in nodes:
            left = max(0.05, within - (time.monotonic() - t0))
            try:
                ct.wait_until(lambda: view(node) == want, left, f"{node.addr}: {what}")
            except AssertionError:
                self.fail(f"{what}: {node.addr} sees {view(node)}, etcd lists "
                          f"{self.etcd.addresses()}, want {want} within {within} s\n"
                          f"{self.dump_logs(nodes)}")


class RegistrationTest(EtcdTest):
    def test_three_nodes_see_each_other_and_route_by_the_ring(self):
        nodes = self.start_nodes(3)
        addrs = sorted(n.addr for n in nodes)
        self.assertEqual(self.etcd.addresses(), addrs)
        # The values are the addresses too (the Go layout).
        out = self.etcd.run_ctl("get", "--prefix", PREFIX).split()
        self.assertEqual(out, [x for a in addrs for x in (PREFIX + a, a)])
        self.assert_views(nodes, addrs, 2.0, "three registered nodes")

        keys = [f"etcd-route-{i}" for i in range(60)]
        for i, key in enumerate(keys):
            self.assertEqual(nodes[i % 3].get(key), ct.synthetic_value(key, 64))
        counts = self.load_counts(nodes)
        for key in keys:
            self.assertEqual(counts.get(key), [ct.ring_owner(addrs, key)],
                             f"{key}: loaded by {counts.get(key)}")

    def test_killed_stopped_and_new_nodes(self):
        nodes = self.start_nodes(4)
        self.assert_views(nodes, [n.addr for n in nodes], 2.0, "four nodes")

        killed = nodes.pop()
        killed.kill()
        self.assert_views(nodes, [n.addr for n in nodes], TTL_S + 2.0,
                          "a SIGKILLed node leaves within TTL + 2 s")

        stopped = nodes.pop()
        stopped.stop(self)
        self.assertIn("deregistered", stopped.log())
        self.assert_views(nodes, [n.addr for n in nodes], 2.0, "a SIGTERMed node leaves within 2 s")

        nodes += self.start_nodes(1)
        self.assert_views(nodes, [n.addr for n in nodes], 2.0, "a new node appears within 2 s")

    def test_an_address_put_by_hand_joins_the_ring(self):
        nodes = self.start_nodes(2)
        # A node that registers like the Go program, by hand: a statically
        # configured node (its ring: the same three addresses) put there with
        # etcdctl. The C++ nodes must route its keys to it.
        port = ct.free_port()
        addr = f"127.0.0.1:{port}"
        all_addrs = sorted([n.addr for n in nodes] + [addr])
        outsider = ct.Node(self.logdir, port, peers=all_addrs)
        self.nodes.append(outsider)
        outsider.start()
        self.etcd.run_ctl("put", PREFIX + addr, addr)
        self.assert_views(nodes, all_addrs, 2.0, "a hand-put address joins")
        key = next(k for k in (f"outsider-{i}" for i in range(1000))
                   if ct.ring_owner(all_addrs, k) == addr)
        self.assertEqual(nodes[0].get(key), ct.synthetic_value(key, 64))
        self.assertEqual(self.load_counts(nodes + [outsider]).get(key), [addr])

    def test_a_burst_of_changes_ends_on_etcds_view(self):
        nodes = self.start_nodes(2)
        gateway = http.client.HTTPConnection("127.0.0.1", self.etcd.client_port, timeout=5)
        self.addCleanup(gateway.close)

        def call(path, body):
            gateway.request("POST", path, json.dumps(body))
            resp = gateway.getresponse()
            data = resp.read()
            self.assertEqual(resp.status, 200, data)

        def b64(s):
            return base64.b64encode(s.encode()).decode()

        fake = [f"127.0.0.1:{20000 + i}" for i in range(10)]
        t0 = time.monotonic()
        for i, a in enumerate(fake):  # ten registrations, and a removal after every other
            call("/v3/kv/put", {"key": b64(PREFIX + a), "value": b64(a)})
            if i % 2 == 1:
                call("/v3/kv/deleterange", {"key": b64(PREFIX + fake[i - 1])})
        took = time.monotonic() - t0
        # 30-35 ms here (measured while a CI build ran); the bound leaves room for a loaded
        # CI machine while still being far below the 1 s the views get.
        self.assertLess(took, 0.5, f"the burst took {took:.3f} s: not a burst")
        want = [n.addr for n in nodes] + fake[1::2]
        self.assertEqual(self.etcd.addresses(), sorted(want))
        self.assert_views(nodes, want, 1.0, "after a burst, etcd's view within 1 s")


class FaultTest(EtcdTest):
    def test_etcd_down_for_20_s_then_back_on_its_data(self):
        nodes = self.start_nodes(3)
        addrs = [n.addr for n in nodes]
        self.assert_views(nodes, addrs, 2.0, "three nodes")
        keys = [f"outage-{i}" for i in range(30)]

        watches = [n.log().count("etcd: watching") for n in nodes]
        self.etcd.stop()
        t_end = time.monotonic() + 20
        rounds = 0
        while time.monotonic() < t_end:  # the outage itself: serve every key all along
            for i, key in enumerate(keys):
                self.assertEqual(nodes[(i + rounds) % 3].get(key, timeout=5),
                                 ct.synthetic_value(key, 64))
            for node in nodes:
                self.assertEqual(view(node), sorted(addrs), "peers kept while etcd is down")
            rounds += 1
            time.sleep(0.2)  # pacing of the load, not synchronisation
        counts = self.load_counts(nodes)
        for key in keys:
            self.assertEqual(len(counts[key]), 1, f"{key} loaded more than once: {counts[key]}")

        self.etcd.start()
        ct.wait_until(lambda: self.etcd.addresses() == sorted(addrs), TTL_S + 5,
                      "registrations present again")
        self.assert_views(nodes, addrs, 2.0, "views after etcd is back")
        for node, before in zip(nodes, watches):  # each node re-listed and watches again
            ct.wait_until(lambda: node.log().count("etcd: watching") > before, 5,
                          f"{node.addr} watching again")
        nodes += self.start_nodes(1)
        self.assert_views(nodes, [n.addr for n in nodes], 2.0,
                          "a change after the outage is seen (watches resumed)")

    def test_etcd_restarted_empty(self):
        nodes = self.start_nodes(3)
        addrs = [n.addr for n in nodes]
        self.etcd.stop()
        self.etcd.wipe()
        self.etcd.start()
        ct.wait_until(lambda: self.etcd.addresses() == sorted(addrs), TTL_S + 3,
                      "every node registered again in an empty etcd")
        self.assert_views(nodes, addrs, 2.0, "views after etcd lost its data")
        for node in nodes:
            self.assertIn("registering", node.log())

    def test_endpoint_failover(self):
        dead = f"127.0.0.1:{ct.free_port()}"
        nodes = self.start_nodes(
            2, args=["-etcd", f"{dead},{self.etcd.endpoint}", "-etcd-lease-ttl-s", str(TTL_S)])
        self.assert_views(nodes, [n.addr for n in nodes], 2.0, "nodes behind a dead endpoint")


class BadConfigTest(EtcdTest):
    def run_node(self, args, timeout=10):
        addr = f"127.0.0.1:{ct.free_port()}"
        t0 = time.monotonic()
        r = subprocess.run([str(ct.BIN_DIR / "lcache-node"), "-addr", addr] + args,
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout + r.stderr, time.monotonic() - t0

    def test_unreachable_etcd_exits_with_a_clear_error(self):
        dead = f"127.0.0.1:{ct.free_port()}"
        rc, out, took = self.run_node(["-etcd", dead, "-etcd-start-timeout-ms", "1500"])
        self.assertNotEqual(rc, 0, out)
        self.assertIn("unreachable", out)
        self.assertIn(dead, out)
        self.assertLess(took, 5.0, out)

    def test_peers_and_etcd_together_refused(self):
        rc, out, _ = self.run_node(["-etcd", self.etcd.endpoint, "-peers", "127.0.0.1:1"])
        self.assertEqual(rc, 2, out)
        self.assertIn("-peers and -etcd", out)
        self.assertEqual(self.etcd.addresses(), [])


class AuthTest(EtcdTest):
    def test_user_and_password(self):
        self.etcd.run_ctl("user", "add", "root:rootpw")
        self.etcd.run_ctl("auth", "enable")
        self.etcd.ctl_args = ["--user", "root:rootpw"]
        nodes = self.start_nodes(2, args=self.etcd_args() + ["-etcd-user", "root",
                                                             "-etcd-password", "rootpw"])
        self.assert_views(nodes, [n.addr for n in nodes], 2.0, "nodes with etcd auth")
        rc, out, _ = BadConfigTest.run_node(
            self, self.etcd_args() + ["-etcd-user", "root", "-etcd-password", "wrong",
                                      "-etcd-start-timeout-ms", "1500"])
        self.assertNotEqual(rc, 0, out)
        self.assertIn("authentication failed", out)


class K8sArgsTest(EtcdTest):
    """k8s/cache.yaml's container args, run for real: POD_IP = 127.0.0.1,
    the test's etcd for etcd:2379, free loopback ports for :9000 and :8080."""

    def test_cache_yaml_args_run_a_node_that_registers_serves_and_leaves(self):
        import urllib.request
        import yaml
        docs = list(yaml.safe_load_all((ct.HERE.parent / "k8s" / "cache.yaml").read_text()))
        deployment = next(d for d in docs if d and d.get("kind") == "Deployment")
        (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                        if c["name"] == "lcache"]
        port, http_port = ct.free_port(), ct.free_port()
        token = "k8s-test-token-0123456789"
        token_file = pathlib.Path(self.logdir) / "admin-token"
        token_file.write_text(token + "\n")
        args = []
        for a in container["args"]:
            a = a.replace("/etc/lcache/admin/token", str(token_file))  # the Secret's mount
            a = a.replace("$(POD_IP):9000", f"127.0.0.1:{port}")
            a = a.replace("0.0.0.0:9000", f"127.0.0.1:{port}")  # -listen, on loopback only
            a = a.replace("0.0.0.0:8080", f"127.0.0.1:{http_port}")
            a = a.replace("etcd:2379", self.etcd.endpoint)
            self.assertNotIn("$(", a, f"unsubstituted variable in {a!r}")
            args.append(a)
        self.assertIn(f"-addr=127.0.0.1:{port}", args)
        self.assertIn(f"-listen=127.0.0.1:{port}", args)
        node = ct.Node(self.logdir, port, args=args)
        node.source = "demo"
        self.nodes.append(node)
        node.start()
        ct.wait_until(lambda: self.etcd.addresses() == [node.addr], 10, "registered in etcd")

        def readyz():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
            except OSError:
                return None
        ct.wait_until(lambda: readyz() == 200, 5, "/readyz 200")
        self.assertEqual(node.get("Tom"), b"630")

        def metrics(headers):
            request = urllib.request.Request(f"http://127.0.0.1:{http_port}/metrics",
                                             headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=2) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
        self.assertEqual(metrics({}), 401)  # the manifest's admin API needs the token
        self.assertEqual(metrics({"Authorization": f"Bearer {token}"}), 200)
        node.stop(self, within=12)  # -drain-delay-ms=5000 of the manifest, then the grace
        self.assertEqual(self.etcd.addresses(), [])


def make_tls(workdir):
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = pathlib.Path(workdir) / "tls"
    d.mkdir()

    def ssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")
    return d


class TlsTest(ct.ClusterTest):
    def test_mutual_tls(self):
        tls = make_tls(self.logdir)
        etcd = Etcd(self.logdir, scheme="https", extra_args=[
            "--cert-file", str(tls / "server.crt"), "--key-file", str(tls / "server.key"),
            "--client-cert-auth", "--trusted-ca-file", str(tls / "ca.crt")])
        etcd.ctl_args = ["--cacert", str(tls / "ca.crt"), "--cert", str(tls / "client.crt"),
                         "--key", str(tls / "client.key")]
        self.addCleanup(etcd.stop)
        etcd.start()
        args = ["-etcd", etcd.endpoint, "-etcd-lease-ttl-s", str(TTL_S),
                "-etcd-ca", str(tls / "ca.crt"), "-etcd-cert", str(tls / "client.crt"),
                "-etcd-key", str(tls / "client.key")]
        node = ct.Node(self.logdir, ct.free_port(), args=args)
        self.nodes.append(node)
        node.start()
        ct.wait_until(lambda: view(node) == [node.addr], 5, "registered over TLS")
        self.assertEqual(etcd.addresses(), [node.addr])
        # Without a client certificate etcd refuses the node: a clear error, exit != 0.
        r = subprocess.run([str(ct.BIN_DIR / "lcache-node"), "-addr",
                            f"127.0.0.1:{ct.free_port()}", "-etcd", etcd.endpoint,
                            "-etcd-ca", str(tls / "ca.crt"), "-etcd-start-timeout-ms", "1500"],
                           capture_output=True, text=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("unreachable", r.stdout + r.stderr)


def main():
    def configure(_):
        if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
            sys.exit("etcd_test: etcd and etcdctl are needed (scripts/setup installs them)")
        os.environ["ETCDCTL_API"] = "3"

    ct.run_main(__doc__, "etcd_test", configure=configure)


if __name__ == "__main__":
    main()
