#!/usr/bin/python3
"""TLS and mutual TLS on the peer port, with certificates made by OpenSSL's
command line for the test (a CA, node certificates for 127.0.0.1, client
certificates, and a second CA that the cluster does not trust):

- a 3-node mTLS cluster routes every key to its owner and loads it once
  (both transports), and lcache-cli reads through it over TLS;
- a plaintext client is refused, and a node given TLS refuses a plaintext
  peer with an error that says so;
- with -tls-client-auth require, a client without a certificate (or with
  one from another CA) is refused;
- the forwarded mark is honoured only from clients whose certificate the CA
  signed: from others the key is routed by the ring, not loaded where it
  landed;
- certificates are read again when their files change and on SIGHUP, and a
  bad new file leaves the previous one serving;
- the admin listener with -http-tls mtls: probes open to all, the rest for a
  CA-signed client certificate; its certificate read again on SIGHUP; its
  flags checked;
- lcache-bench speaks TLS and mTLS (every call answered, every key loaded
  once), and says why when the handshake fails (no client certificate, a
  CA that did not sign the node's, a node serving plaintext).

Run: /usr/bin/python3 tests/tls_test.py --bin build/bin [unittest args]
"""

import json
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import h2.config
import h2.connection
import h2.events

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_test as ct  # noqa: E402  (the node harness)

GET = "/lcache.LCache/Get"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


class Certs:
    """A CA and certificates it signs, in `directory`."""

    def __init__(self, directory, name="ca"):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ca = self.dir / f"{name}.pem"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
                "-subj", f"/CN={name}", cwd=self.dir)

    def issue(self, cn, san="IP:127.0.0.1,DNS:localhost"):
        """(cert, key) for `cn`, with subjectAltName `san`."""
        base = f"{self.name}-{cn}"
        (self.dir / f"{base}.ext").write_text(f"subjectAltName={san}\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{base}.key", "-out", f"{base}.csr", "-subj", f"/CN={cn}",
                cwd=self.dir)
        openssl("x509", "-req", "-in", f"{base}.csr", "-CA", f"{self.name}.pem", "-CAkey",
                f"{self.name}.key", "-CAcreateserial", "-out", f"{base}.pem", "-days", "2",
                "-extfile", f"{base}.ext", cwd=self.dir)
        return self.dir / f"{base}.pem", self.dir / f"{base}.key"


def cli(*args, timeout=10):
    r = subprocess.run([str(ct.BIN_DIR / "lcache-cli"), *map(str, args)], capture_output=True,
                       timeout=timeout)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


class TlsH2Client:
    """HTTP/2 over TLS with Python's ssl module: a client the node did not write."""

    def __init__(self, port, ca, cert=None, key=None):
        context = ssl.create_default_context(cafile=str(ca))
        context.set_alpn_protocols(["h2"])
        if cert is not None:
            context.load_cert_chain(str(cert), str(key))
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.port = port

    def close(self):
        self.sock.close()

    def get(self, key, forwarded=False):
        body = json.dumps({"group": "scores", "key": key}).encode()
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "https"), (":path", GET),
                   (":authority", f"127.0.0.1:{self.port}"),
                   ("content-type", "application/grpc+json"), ("te", "trailers")]
        if forwarded:
            headers.append(("lcache-forwarded", "1"))
        self.conn.send_headers(sid, headers)
        self.conn.send_data(sid, b"\x00" + len(body).to_bytes(4, "big") + body, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        data, trailers = b"", {}
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed")
            for ev in self.conn.receive_data(chunk):
                if isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    data += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, (h2.events.TrailersReceived, h2.events.ResponseReceived)):
                    trailers.update(dict(ev.headers))
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    self.sock.sendall(self.conn.data_to_send())
                    return trailers.get("grpc-status"), data
            self.sock.sendall(self.conn.data_to_send())


class TlsTest(ct.ClusterTest):
    @classmethod
    def setUpClass(cls):
        cls.certs_dir = pathlib.Path(ct.tempfile.mkdtemp(prefix="lcache-tls-test-"))
        cls.ca = Certs(cls.certs_dir, "ca")
        cls.other_ca = Certs(cls.certs_dir, "other-ca")
        cls.node_cert, cls.node_key = cls.ca.issue("node")
        cls.client_cert, cls.client_key = cls.ca.issue("client")
        cls.stranger_cert, cls.stranger_key = cls.other_ca.issue("stranger")

    @classmethod
    def tearDownClass(cls):
        ct.shutil.rmtree(cls.certs_dir, ignore_errors=True)

    def tls_args(self, *extra, cert=None, key=None):
        return ["-tls-cert", str(cert or self.node_cert), "-tls-key", str(key or self.node_key),
                "-tls-ca", str(self.ca.ca), *extra]

    def credentials(self):
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.ca.read_bytes(),
            private_key=self.client_key.read_bytes(),
            certificate_chain=self.client_cert.read_bytes())

    def start_tls_cluster(self, n, transport="lean", extra=()):
        ports = [ct.free_port() for _ in range(n)]
        peers = [f"127.0.0.1:{p}" for p in ports]
        nodes = []
        for port in ports:
            node = ct.Node(self.logdir, port, peers=peers, source="synthetic:64",
                           args=["-transport", transport, *self.tls_args(*extra)])
            node.credentials = self.credentials()
            self.nodes.append(node)
            nodes.append(node)
        for node in nodes:
            node.start()
        return nodes, peers

    def cluster_routes_each_key_once(self, transport):
        nodes, peers = self.start_tls_cluster(3, transport)
        keys = [f"key-{i}" for i in range(30)]
        for i, key in enumerate(keys):
            self.assertEqual(nodes[i % 3].get(key), ct.synthetic_value(key, 64))
        for key in keys:  # again: all hits now
            self.assertEqual(nodes[(keys.index(key) + 1) % 3].get(key),
                             ct.synthetic_value(key, 64))
        for node in nodes:
            for key in node.loads():
                self.assertEqual(ct.ring_owner(peers, key), node.addr, key)
        self.assertEqual(sorted(k for n in nodes for k in n.loads()), sorted(keys))
        rc, out, err = cli("get", "-addr", peers[0], "-key", "key-7", "-tls-ca", self.ca.ca,
                           "-transport", transport)
        self.assertEqual((rc, out.encode()), (0, ct.synthetic_value("key-7", 64)), err)

    def test_mtls_cluster_lean(self):
        self.cluster_routes_each_key_once("lean")

    def test_mtls_cluster_grpc(self):
        self.cluster_routes_each_key_once("grpc")

    def test_plaintext_client_refused_and_plaintext_peer_named(self):
        (node,), peers = self.start_tls_cluster(1)
        rc, _, err = cli("get", "-addr", peers[0], "-key", "Tom", "-timeout-ms", "1000")
        self.assertNotEqual(rc, 0)
        ct.wait_until(lambda: "a plaintext client?" in node.log(), 5, "the refusal logged")
        # A TLS node whose peer serves plaintext: the call fails saying why,
        # and the node loads the key itself (as for any failed peer).
        plain_port, tls_port = ct.free_port(), ct.free_port()
        mixed = [f"127.0.0.1:{plain_port}", f"127.0.0.1:{tls_port}"]
        plain = ct.Node(self.logdir, plain_port, peers=mixed, source="synthetic:8")
        tls = ct.Node(self.logdir, tls_port, peers=mixed, source="synthetic:8",
                      args=self.tls_args())
        tls.credentials = self.credentials()
        self.nodes += [plain, tls]
        plain.start()
        tls.start()
        key = next(f"k{i}" for i in range(1000)
                   if ct.ring_owner(mixed, f"k{i}") == mixed[0])
        self.assertEqual(tls.get(key), ct.synthetic_value(key, 8))
        ct.wait_until(lambda: "is the peer serving TLS?" in tls.log(), 5,
                      "a clear error about the plaintext peer")

    def test_required_client_certificates(self):
        (node,), peers = self.start_tls_cluster(1, extra=["-tls-client-auth", "require"])
        base = ["get", "-addr", peers[0], "-key", "Tom", "-timeout-ms", "2000", "-tls-ca",
                self.ca.ca]
        rc, _, _ = cli(*base)
        self.assertNotEqual(rc, 0, "a client without a certificate was served")
        rc, _, _ = cli(*base, "-tls-cert", self.stranger_cert, "-tls-key", self.stranger_key)
        self.assertNotEqual(rc, 0, "a certificate of another CA was accepted")
        rc, out, err = cli(*base, "-tls-cert", self.client_cert, "-tls-key", self.client_key)
        self.assertEqual(rc, 0, err)

    def test_forwarded_mark_is_trusted_only_with_a_ca_certificate(self):
        nodes, peers = self.start_tls_cluster(2)
        key = next(f"m{i}" for i in range(1000) if ct.ring_owner(peers, f"m{i}") == peers[1])
        # Marked, without a certificate: routed by the ring to its owner.
        c = TlsH2Client(nodes[0].port, self.ca.ca)
        self.addCleanup(c.close)
        self.assertEqual(c.get(key, forwarded=True)[0], "0")
        self.assertNotIn(key, nodes[0].loads())
        self.assertIn(key, nodes[1].loads())
        # Marked, with the CA's certificate (a peer): served where it landed.
        key2 = next(f"n{i}" for i in range(1000) if ct.ring_owner(peers, f"n{i}") == peers[1])
        c2 = TlsH2Client(nodes[0].port, self.ca.ca, self.client_cert, self.client_key)
        self.addCleanup(c2.close)
        self.assertEqual(c2.get(key2, forwarded=True)[0], "0")
        self.assertIn(key2, nodes[0].loads())
        self.assertNotIn(key2, nodes[1].loads())

    def start_reloading_node(self, transport):
        """A node serving copies of the node certificate (files the test
        rewrites), and served_with(ca): whether a client trusting `ca` gets
        Tom from it."""
        live_cert = self.certs_dir / f"{transport}-live.pem"
        live_key = self.certs_dir / f"{transport}-live.key"
        live_cert.write_bytes(self.node_cert.read_bytes())
        live_key.write_bytes(self.node_key.read_bytes())
        port = ct.free_port()
        node = ct.Node(self.logdir, port, source="demo",
                       args=["-transport", transport,
                             *self.tls_args(cert=live_cert, key=live_key)])
        node.credentials = self.credentials()
        self.nodes.append(node)
        node.start()

        def served_with(ca):
            return cli("get", "-addr", f"127.0.0.1:{port}", "-key", "Tom", "-tls-ca", ca,
                       "-timeout-ms", "2000")[0] == 0
        self.assertTrue(served_with(self.ca.ca))
        return node, live_cert, live_key, served_with

    def test_grpc_transport_reloads_changed_certificates(self):
        node, live_cert, live_key, served_with = self.start_reloading_node("grpc")
        other_cert, other_key = self.other_ca.issue("grpc-node2")
        os.replace(other_key, live_key)
        os.replace(other_cert, live_cert)
        ct.wait_until(lambda: served_with(self.other_ca.ca), 20, "gRPC's watcher to reload")
        node.signal(signal.SIGHUP)  # says what it does not do, and does not stop the node
        ct.wait_until(lambda: "SIGHUP: lcache: the gRPC transport" in node.log(), 5, "the SIGHUP")
        self.assertTrue(node.alive())

    def test_certificates_reload_on_change_and_sighup_bad_files_keep_the_old(self):
        node, live_cert, live_key, served_with = self.start_reloading_node("lean")
        # A certificate of the other CA, written over the files: used by new
        # connections once the node looks again (at most a second).
        other_cert, other_key = self.other_ca.issue("node2")
        os.replace(other_key, live_key)  # key first: a mismatched pair is refused, then retried
        os.replace(other_cert, live_cert)
        ct.wait_until(lambda: served_with(self.other_ca.ca), 10, "the new certificate")
        self.assertFalse(served_with(self.ca.ca))
        # A broken file: the node keeps serving the certificate it has (the
        # files are looked at when connections start).
        reported = node.log().count("still using the previous files")
        live_cert.write_text("not a certificate\n")
        ct.wait_until(lambda: served_with(self.other_ca.ca) and
                      node.log().count("still using the previous files") > reported, 10,
                      "the bad file reported, the old certificate still served")
        # SIGHUP: read now (the first certificate again).
        live_cert.write_bytes(self.node_cert.read_bytes())
        live_key.write_bytes(self.node_key.read_bytes())
        node.signal(signal.SIGHUP)
        ct.wait_until(lambda: "SIGHUP: TLS files read again" in node.log(), 5, "the SIGHUP")
        self.assertTrue(served_with(self.ca.ca))
        self.assertTrue(node.alive())

    def test_admin_https_reloads_on_sighup_and_its_flags_are_checked(self):
        live_cert = self.certs_dir / "admin-live.pem"
        live_key = self.certs_dir / "admin-live.key"
        live_cert.write_bytes(self.node_cert.read_bytes())
        live_key.write_bytes(self.node_key.read_bytes())
        hport = ct.free_port()
        node = ct.Node(self.logdir, ct.free_port(), source="demo",
                       args=[*self.tls_args(cert=live_cert, key=live_key),
                             "-http", f"127.0.0.1:{hport}", "-http-tls", "mtls"])
        node.credentials = self.credentials()
        self.nodes.append(node)
        node.start()

        def admin(path, ca, client_cert=True):
            context = ssl.create_default_context(cafile=str(ca))
            if client_cert:
                context.load_cert_chain(str(self.client_cert), str(self.client_key))
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                    urllib.request.HTTPSHandler(context=context))
            try:
                with opener.open(f"https://127.0.0.1:{hport}{path}", timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
            except OSError:
                return None  # the handshake failed

        ct.wait_until(lambda: admin("/healthz", self.ca.ca) == 200, 10, "the admin listener")
        self.assertEqual(admin("/groups/scores/Tom", self.ca.ca), 200)
        self.assertEqual(admin("/groups/scores/Tom", self.ca.ca, client_cert=False), 401)
        self.assertEqual(admin("/healthz", self.ca.ca, client_cert=False), 200)
        # The other CA's certificate, and SIGHUP: the admin listener serves it
        # (the lean peer port too).
        other_cert, other_key = self.other_ca.issue("admin-node2")
        os.replace(other_key, live_key)
        os.replace(other_cert, live_cert)
        node.signal(signal.SIGHUP)
        ct.wait_until(lambda: "SIGHUP: TLS files read again" in node.log(), 5, "the SIGHUP")
        self.assertEqual(admin("/healthz", self.other_ca.ca), 200)
        self.assertIsNone(admin("/healthz", self.ca.ca))
        self.assertTrue(node.alive())

        def run(*extra):
            r = subprocess.run([str(ct.BIN_DIR / "lcache-node"), "-addr",
                                f"127.0.0.1:{ct.free_port()}", "-http",
                                f"127.0.0.1:{ct.free_port()}", *extra],
                               capture_output=True, text=True, timeout=10)
            return r.returncode, r.stderr + r.stdout
        for extra, says in (
                (["-http-tls", "tls"], "needs -tls-cert and -tls-key"),
                (["-http-tls", "mtls", "-tls-cert", str(self.node_cert), "-tls-key",
                  str(self.node_key)], "-http-tls mtls needs -tls-ca"),
                (["-http-tls", "yes"], "-http-tls must be none, tls or mtls")):
            rc, out = run(*extra)
            self.assertEqual(rc, 2, out)
            self.assertIn(says, out)

    def bench(self, *args):
        """lcache-bench -json: (exit code, its JSON, stderr)."""
        r = subprocess.run([str(ct.BIN_DIR / "lcache-bench"), "-json", *map(str, args)],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, json.loads(r.stdout) if r.stdout else None, r.stderr

    def test_bench_over_mtls(self):
        nodes, peers = self.start_tls_cluster(2, extra=["-tls-client-auth", "require"])
        # Two passes of sequential keys over two targets: each node is asked
        # for every key; its owner loads it (the other asks the owner, node
        # to node over mTLS), and the second ask is a hit.
        keys = 300
        rc, out, err = self.bench("-targets", ",".join(peers), "-keys", keys, "-requests", 2 * keys,
                                  "-dist", "sequential", "-concurrency", 16,
                                  "-tls-ca", self.ca.ca, "-tls-cert", self.client_cert,
                                  "-tls-key", self.client_key)
        self.assertEqual(rc, 0, (out, err))
        self.assertEqual((out["ok"], out["errors"]), (2 * keys, 0), out)
        counts = self.load_counts(nodes)
        self.assertEqual(sorted(counts), sorted(f"k{i}" for i in range(keys)))
        for key, loaded_by in counts.items():
            self.assertEqual(loaded_by, [ct.ring_owner(peers, key)], key)

    def test_bench_says_why_a_handshake_fails(self):
        (node,), peers = self.start_tls_cluster(1, extra=["-tls-client-auth", "require"])
        plain = self.start_cluster(1, source="synthetic:8")[0]
        base = ["-requests", 8, "-concurrency", 8, "-keys", 8, "-dist", "sequential"]
        cases = [
            # (target, flags, what the message must say)
            (peers[0], ["-tls-ca", self.ca.ca], "certificate required"),
            (peers[0], ["-tls-ca", self.other_ca.ca, "-tls-cert", self.client_cert,
                        "-tls-key", self.client_key], "certificate verify failed"),
            (plain.addr, ["-tls-ca", self.ca.ca], "(is the node serving TLS?)"),
        ]
        for target, flags, reason in cases:
            rc, out, err = self.bench("-targets", target, *base, *flags)
            self.assertEqual(rc, 1, (flags, out, err))
            self.assertEqual((out["ok"], out["errors_by_code"]), (0, {"UNAVAILABLE": 8}), out)
            message = out["error_messages"]["UNAVAILABLE"]
            self.assertIn("TLS handshake failed", message)
            self.assertIn(reason, message)
        self.assertEqual(node.loads() + plain.loads(), [])
        # A client certificate without a CA to verify the node: bad flags.
        rc, _, err = self.bench("-targets", peers[0], *base, "-tls-cert", self.client_cert,
                                "-tls-key", self.client_key)
        self.assertEqual(rc, 2)
        self.assertIn("need -tls-ca", err)


if __name__ == "__main__":
    ct.run_main(__doc__, "tls_test")
