#!/usr/bin/python3
"""Wire tests of the lean transport at the HTTP/2 frame level, and the load
generator against real nodes.

grpcio hides what the lean transport writes itself (content-type, the
message prefix, trailers, GOAWAY), so these tests speak HTTP/2 directly with
Debian's python3-h2, as a Go client and a Go server would:

- a Go-style client (content-type application/grpc+json) gets its subtype
  back, a prefixed JSON message and grpc-status 0 in trailers; compressed
  messages, a wrong content-type, and the gRPC health check; GOAWAY when the
  node stops;
- a Go-style server (it picks its codec by the content-type subtype and
  fails a request without +json, as Go's gRPC does) gets the C++ node's
  forwarded requests with the subtype it needs: the interop direction gRPC
  C++ 1.51 cannot serve;
- the owner's remaining TTL (ttl_ms) beside the value, which a Go-style
  decoder skips.

Run: /usr/bin/python3 tests/h2_wire_test.py --bin build/bin [unittest args]
"""

import base64
import json
import pathlib
import socket
import subprocess
import struct
import sys
import threading

import h2.config
import h2.connection
import h2.events

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_test as ct  # noqa: E402  (the node harness)

GET = "/lcache.LCache/Get"
HEALTH = "/grpc.health.v1.Health/Check"


def framed(message, compressed=False):
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


def unframed(body):
    flag, n = struct.unpack(">BI", body[:5])
    assert flag == 0 and len(body) == 5 + n, body
    return body[5:]


class H2Client:
    """One HTTP/2 connection; call() sends one request and collects the reply."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.authority = f"127.0.0.1:{port}"
        self.terminated = None

    def close(self):
        self.sock.close()

    def send(self, path, body, content_type="application/grpc+json", extra=()):
        """Sends one request without waiting; returns its stream id."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                     (":authority", self.authority),
                                     ("content-type", content_type), ("te", "trailers")]
                               + list(extra))
        self.conn.send_data(sid, body, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        return sid

    def reset(self, sid):
        """RST_STREAM (CANCEL): the client gives up on the call."""
        self.conn.reset_stream(sid, error_code=8)
        self.sock.sendall(self.conn.data_to_send())

    def call(self, path, body, content_type="application/grpc+json", extra=()):
        sid = self.send(path, body, content_type, extra)
        reply = {"headers": None, "data": b"", "trailers": None, "reset": None}
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("connection closed before the reply ended")
            for ev in self.conn.receive_data(data):
                if getattr(ev, "stream_id", None) not in (None, sid):
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    reply["headers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    reply["data"] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.TrailersReceived):
                    reply["trailers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.StreamReset):
                    reply["reset"] = ev.error_code
                    return reply
                elif isinstance(ev, h2.events.StreamEnded):
                    self.sock.sendall(self.conn.data_to_send())
                    return reply
            self.sock.sendall(self.conn.data_to_send())

    def wait_goaway(self, timeout):
        self.sock.settimeout(timeout)
        while self.terminated is None:
            data = self.sock.recv(65536)
            if not data:
                break
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ConnectionTerminated):
                    self.terminated = ev
        return self.terminated


class LeanServerWireTest(ct.ClusterTest):
    def setUp(self):
        super().setUp()
        (self.node,) = self.start_cluster(1, source="demo", args=["-transport", "lean"])
        self.client = H2Client(self.node.port)
        self.addCleanup(self.client.close)

    def test_go_style_client_gets_its_subtype_a_prefixed_message_and_trailers(self):
        request = json.dumps({"group": "scores", "key": "Tom"}).encode()
        reply = self.client.call(GET, framed(request))
        self.assertEqual(reply["headers"][":status"], "200")
        self.assertEqual(reply["headers"]["content-type"], "application/grpc+json")
        self.assertEqual(json.loads(unframed(reply["data"])),
                         {"value": base64.b64encode(b"630").decode()})
        self.assertEqual(reply["trailers"], {"grpc-status": "0"})
        # Plain application/grpc (gRPC C++, grpcio) is answered in kind.
        reply = self.client.call(GET, framed(request), content_type="application/grpc")
        self.assertEqual(reply["headers"]["content-type"], "application/grpc")
        self.assertEqual(reply["trailers"]["grpc-status"], "0")

    def test_errors_are_trailers_only_with_a_percent_encoded_message(self):
        reply = self.client.call(GET, framed(b'{"group": 7, "key": "\xc3\xa9"}'))
        self.assertEqual(reply["headers"]["grpc-status"], "3")  # INVALID_ARGUMENT
        self.assertTrue(reply["headers"]["grpc-message"])
        self.assertTrue(all(0x20 <= ord(c) < 0x7f for c in reply["headers"]["grpc-message"]))
        self.assertEqual(reply["data"], b"")
        reply = self.client.call(GET, framed(b'{"group":"scores","key":"Tom"}', compressed=True))
        self.assertEqual(reply["headers"]["grpc-status"], "3")
        self.assertIn("compressed", reply["headers"]["grpc-message"])
        reply = self.client.call(GET, framed(b"{}") + framed(b"{}"))
        self.assertEqual(reply["headers"]["grpc-status"], "3")
        reply = self.client.call(GET, b'{"group":"scores","key":"Tom"}', content_type="text/plain")
        self.assertEqual(reply["headers"][":status"], "415")
        self.assertEqual(self.node.loads(), [])
        self.assertEqual(self.node.get("Tom"), b"630")  # still serving

    def test_health_check(self):
        reply = self.client.call(HEALTH, framed(b""), content_type="application/grpc")
        self.assertEqual(unframed(reply["data"]), b"\x08\x01")  # SERVING
        self.assertEqual(reply["trailers"], {"grpc-status": "0"})
        reply = self.client.call(HEALTH, framed(b"\x0a\x0dlcache.LCache"))
        self.assertEqual(unframed(reply["data"]), b"\x08\x01")
        reply = self.client.call(HEALTH, framed(b"\x0a\x03foo"))
        self.assertEqual(reply["headers"]["grpc-status"], "5")  # NOT_FOUND

    def test_goaway_on_sigterm(self):
        self.assertEqual(self.client.call(GET, framed(b'{"group":"scores","key":"Tom"}'))
                         ["trailers"]["grpc-status"], "0")
        self.node.close_channel()
        self.node.signal(ct.signal.SIGTERM)
        ev = self.client.wait_goaway(5)
        self.assertIsNotNone(ev, "no GOAWAY before the connection closed")
        self.assertEqual(ev.error_code, 0)  # NO_ERROR
        self.assertEqual(ev.last_stream_id, 1)
        self.client.close()
        self.assertEqual(self.node.proc.wait(10), 0)


class ResetStreamTest(ct.OpsTest):
    """A client that resets its streams costs no loads: a miss still queued
    when its stream is reset (or its connection closes) is dropped, counted in
    lcache_loads_cancelled_total, and a legitimate miss behind it is served."""

    def test_reset_streams_are_not_loaded(self):
        # One load thread, held for a second by the first miss, so every
        # later miss queues behind it while its stream is reset.
        ((node, hport),) = self.start_http_nodes(
            1, source="synthetic:16:1000", args=["-transport", "lean", "-load-threads", "1"])
        hostile = H2Client(node.port)
        self.addCleanup(hostile.close)
        hostile.send(GET, framed(b'{"group":"scores","key":"busy"}'))
        ct.wait_until(lambda: node.loads() == ["busy"], 5, "the first load to start")
        for i in range(200):
            hostile.reset(hostile.send(GET, framed(json.dumps(
                {"group": "scores", "key": f"gone-{i}"}).encode())))
        # A connection that closes with misses queued gives them up too.
        leaving = H2Client(node.port)
        for i in range(20):
            leaving.send(GET, framed(json.dumps({"group": "scores", "key": f"left-{i}"}).encode()))
        leaving.sock.shutdown(socket.SHUT_WR)  # FIN after the requests, then read to the end
        while leaving.sock.recv(65536):
            pass
        leaving.close()
        wanted = H2Client(node.port)
        self.addCleanup(wanted.close)
        reply = wanted.call(GET, framed(b'{"group":"scores","key":"wanted"}'))
        self.assertEqual(reply["trailers"], {"grpc-status": "0"}, reply)
        self.assertEqual(json.loads(unframed(reply["data"])),
                         {"value": base64.b64encode(ct.synthetic_value("wanted", 16)).decode()})
        # The dropped misses leave the queue in order; "wanted" may have been
        # queued before the last of them (the node reads the hostile
        # connection in chunks), so their count is awaited.
        cancelled = 'lcache_loads_cancelled_total{group="scores"}'
        ct.wait_until(lambda: ct.metric_values(self.metrics(hport))[cancelled] == 220, 10,
                      "220 loads cancelled")
        self.assertEqual(node.loads(), ["busy", "wanted"])


def go_decode_response(message):
    """What Go's json.Unmarshal makes of a reply for the Go program's
    struct { Value []byte `json:"value"`; Err string `json:"err"` }: unknown
    fields are skipped, value is base64, a missing field is empty."""
    doc = json.loads(message)
    assert isinstance(doc, dict), doc
    return base64.b64decode(doc.get("value") or "", validate=True), doc.get("err") or ""


class ExpiryOnTheWireTest(ct.ClusterTest):
    """The owner's remaining TTL rides beside the value as ttl_ms; a Go
    client, which ignores unknown fields, still reads the value."""

    def test_ttl_ms_beside_the_value_and_go_still_decodes_it(self):
        (node,) = self.start_cluster(1, source="demo", args=["-expire-ms", "60000"])
        client = H2Client(node.port)
        self.addCleanup(client.close)
        request = framed(b'{"group":"scores","key":"Tom"}')
        for when in ("load", "hit"):
            reply = client.call(GET, request)
            self.assertEqual(reply["trailers"], {"grpc-status": "0"}, when)
            message = unframed(reply["data"])
            doc = json.loads(message)
            self.assertEqual(sorted(doc), ["ttl_ms", "value"], message)
            self.assertIsInstance(doc["ttl_ms"], int)
            self.assertTrue(50000 < doc["ttl_ms"] <= 60000, message)
            self.assertEqual(go_decode_response(message), (b"630", ""), message)
            self.assertRegex(message, rb'^\{"value":"NjMw","ttl_ms":[0-9]+\}$')

    def test_no_expiry_means_the_go_programs_exact_bytes(self):
        (node,) = self.start_cluster(1, source="demo")
        client = H2Client(node.port)
        self.addCleanup(client.close)
        reply = client.call(GET, framed(b'{"group":"scores","key":"Tom"}'))
        self.assertEqual(unframed(reply["data"]), b'{"value":"NjMw"}')

class FakeGoServer:
    """An HTTP/2 gRPC server that behaves like Go's with the JSON codec
    registered: it decodes JSON only for content-type application/grpc+json,
    and fails anything else as Go's proto codec would fail on JSON bytes."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.requests = []  # (content-type, path, decoded request)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopped = True
        self.listener.close()

    def _accept(self):
        while not self.stopped:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock):
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        headers, bodies = {}, {}
        with sock:
            while not self.stopped:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        headers[ev.stream_id] = dict(ev.headers)
                        bodies[ev.stream_id] = b""
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self._respond(conn, ev.stream_id, headers[ev.stream_id],
                                      bodies[ev.stream_id])
                sock.sendall(conn.data_to_send())

    def _respond(self, conn, sid, headers, body):
        ctype = headers.get("content-type")
        if ctype != "application/grpc+json":
            self.requests.append((ctype, headers.get(":path"), None))
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                    ("grpc-status", "13"),
                                    ("grpc-message", "grpc: error unmarshalling request: proto")],
                              end_stream=True)
            return
        request = json.loads(unframed(body))
        self.requests.append((ctype, headers.get(":path"), request))
        value = f"go:{request['key']}".encode()
        reply = json.dumps({"value": base64.b64encode(value).decode()}).encode()
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc+json")])
        conn.send_data(sid, framed(reply))
        conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)


class GoServerInteropTest(ct.ClusterTest):
    def test_forwarded_to_a_go_style_server_with_the_json_subtype(self):
        go = FakeGoServer()
        self.addCleanup(go.stop)
        port = ct.free_port()
        cpp_addr = f"127.0.0.1:{port}"
        peers = [cpp_addr, go.addr]
        node = ct.Node(self.logdir, port, peers=peers, args=["-transport", "lean"])
        self.nodes.append(node)
        node.start()
        keys = [k for k in (f"go-{i}" for i in range(200)) if ct.ring_owner(peers, k) == go.addr][:5]
        self.assertTrue(keys)
        for key in keys:
            self.assertEqual(node.get(key), f"go:{key}".encode(), node.log())
        self.assertEqual(node.loads(), [], "a Go-owned key was loaded locally")
        self.assertEqual([(c, p) for c, p, _ in go.requests],
                         [("application/grpc+json", GET)] * len(keys))
        self.assertEqual([r["key"] for _, _, r in go.requests], keys)


class LoadGeneratorTest(ct.ClusterTest):
    """lcache-bench against real nodes: its figures add up, and a dead target
    is counted as errors, not a hang or a crash."""

    def bench(self, *args):
        r = subprocess.run([str(ct.BIN_DIR / "lcache-bench"), "-json", *args],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, json.loads(r.stdout), r.stderr

    def test_closed_loop_over_two_nodes(self):
        a, b = self.start_cluster(2, source="synthetic:100")
        rc, out, err = self.bench("-targets", f"{a.addr},{b.addr}", "-concurrency", "8",
                                  "-duration-s", "1", "-warmup-s", "0.2", "-keys", "50",
                                  "-dist", "zipf")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out["errors"], 0, out)
        self.assertGreater(out["ok"], 100, out)
        self.assertAlmostEqual(out["qps"], out["ok"] / out["seconds"], delta=1)
        lat = out["latency_us"]
        self.assertTrue(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"], lat)
        self.assertGreater(out["client_cpu_us_per_call"], 0)
        # Each of the 50 keys loaded once in the whole cluster (k0..k49).
        counts = self.load_counts([a, b])
        self.assertTrue(all(len(v) == 1 for v in counts.values()), counts)
        self.assertLessEqual(len(counts), 50)

    def test_keeps_a_go_style_servers_stream_limit_and_window(self):
        # python-h2 as the server: at most 100 streams at once and a 64 KiB
        # connection window, both enforced (a client that goes over has its
        # connection closed). 300 calls of 2 KB requests go over both.
        go = FakeGoServer()
        self.addCleanup(go.stop)
        rc, out, err = self.bench("-targets", go.addr, "-group", "g" * 2000, "-concurrency", "300",
                                  "-duration-s", "1", "-warmup-s", "0", "-keys", "50")
        self.assertEqual(rc, 0, (out, err))
        self.assertEqual(out["errors"], 0, out)
        self.assertGreater(out["ok"], 300, out)

    def test_dead_target_is_errors(self):
        dead = f"127.0.0.1:{ct.free_port()}"
        rc, out, _ = self.bench("-targets", dead, "-duration-s", "0.5", "-warmup-s", "0")
        self.assertEqual(rc, 1)
        self.assertEqual(out["ok"], 0)
        self.assertGreater(out["errors_by_code"]["UNAVAILABLE"], 0)


def main():
    ct.run_main(__doc__, "h2_wire_test")


if __name__ == "__main__":
    main()
