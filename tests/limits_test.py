#!/usr/bin/python3
"""Hostile clients against a real lcache-node (lean transport): the limits of
PeerServerLimits and the log's defences, each attack from the security review
re-run small (docs/SECURITY.md has the full-size runs and their figures).

- connections that send nothing, or only the HTTP/2 preface, are closed
  (-request-timeout, -idle-timeout), while a client that keeps its
  connection busy is not;
- a request that never completes is reset (RST_STREAM CANCEL);
- request bodies held for incomplete requests are capped per connection and
  in all (RST_STREAM ENHANCE_YOUR_CALM), and the node's RSS stays bounded;
- connections past -max-connections are closed at once, and service comes
  back when one closes;
- at the descriptor limit the node neither spins nor stops: it logs once,
  and serves again when descriptors free;
- a key with a newline cannot forge a log line, and a miss storm writes a
  bounded number of lines.

Run: /usr/bin/python3 tests/limits_test.py --bin build/bin [unittest args]
"""

import json
import os
import pathlib
import resource
import socket
import sys
import time

import h2.events
import h2.exceptions

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_test as ct  # noqa: E402  (the node harness)
from h2_wire_test import GET, H2Client, framed  # noqa: E402

ENHANCE_YOUR_CALM = 0xB
CANCEL = 0x8


def rss_bytes(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu_ticks(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def closed_within(sock, timeout):
    """True if the peer closes `sock` (EOF or reset) within `timeout`; the
    bytes it sent before (a GOAWAY) are read and dropped."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


def preface_only(port):
    """A connection that sends the preface and SETTINGS, then nothing."""
    client = H2Client(port)  # H2Client sends both
    return client


def pump(client, timeout):
    """Reads what the server sent within `timeout` (its settings, window
    updates, resets); resets are collected in client.resets. False on EOF."""
    if not hasattr(client, "resets"):
        client.resets = {}
    # The short timeout is for this read only: left on the socket, it would
    # also bound the next sendall, which a loaded machine can take longer
    # over (a loaded run timed out sending a stream's body after a 1 s pump).
    previous = client.sock.gettimeout()
    client.sock.settimeout(timeout)
    try:
        data = client.sock.recv(65536)
    except socket.timeout:
        return True
    finally:
        client.sock.settimeout(previous)
    if not data:
        return False
    for ev in client.conn.receive_data(data):
        if isinstance(ev, h2.events.StreamReset):
            client.resets[ev.stream_id] = ev.error_code
    client.sock.sendall(client.conn.data_to_send())
    return True


def open_stream(client, body, end_stream=False):
    """A request of `body`, sent as flow control allows; without END_STREAM
    unless asked. Returns its stream id (None if the server closed)."""
    conn = client.conn
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", GET),
                            (":authority", client.authority),
                            ("content-type", "application/grpc+json"), ("te", "trailers")])
    sent = 0
    while sent < len(body):
        if sid in getattr(client, "resets", {}):
            break
        n = min(16384, len(body) - sent, conn.local_flow_control_window(sid))
        if n <= 0:
            client.sock.sendall(conn.data_to_send())
            if not pump(client, 1):
                return None
            continue
        conn.send_data(sid, body[sent:sent + n], end_stream=end_stream and sent + n == len(body))
        sent += n
    client.sock.sendall(conn.data_to_send())
    return sid


def resets_until(client, count, timeout):
    """Stream resets received (stream id -> error code) until `count` or `timeout`."""
    deadline = time.monotonic() + timeout
    pump(client, 0.01)
    while len(client.resets) < count and time.monotonic() < deadline:
        if not pump(client, max(0.01, deadline - time.monotonic())):
            break
    return client.resets


def attacker(port):
    """A client that has read the server's settings (its windows)."""
    client = H2Client(port)
    client.resets = {}
    deadline = time.monotonic() + 5
    while client.conn.remote_settings.initial_window_size == 65535 and \
            time.monotonic() < deadline:
        pump(client, 0.1)
    return client


def get_ok(node, key="Tom"):
    request = json.dumps({"group": "scores", "key": key}).encode()
    client = H2Client(node.port)
    try:
        reply = client.call(GET, framed(request))
        return reply["trailers"] == {"grpc-status": "0"}
    finally:
        client.close()


class LimitsTest(ct.ClusterTest):
    def start_node(self, *args, source="demo", preexec=None):
        node = ct.Node(self.logdir, ct.free_port(), source=source,
                       args=["-transport", "lean", *args])
        if preexec is not None:
            node.preexec = preexec
        node.start()
        self.nodes.append(node)
        return node

    def test_silent_and_preface_only_connections_are_closed_busy_ones_are_not(self):
        node = self.start_node("-request-timeout", "1s", "-idle-timeout", "3s")
        silent = socket.create_connection(("127.0.0.1", node.port))
        self.addCleanup(silent.close)
        preface = preface_only(node.port)
        self.addCleanup(preface.close)
        busy = H2Client(node.port)
        self.addCleanup(busy.close)
        started = time.monotonic()
        # No preface within the request timeout (1 s, swept every second).
        self.assertTrue(closed_within(silent, 4), "a silent connection stayed open")
        self.assertLess(time.monotonic() - started, 4)
        # A client that calls every 0.5 s outlives the idle timeout.
        request = framed(json.dumps({"group": "scores", "key": "Tom"}).encode())
        while time.monotonic() - started < 5:
            self.assertEqual(busy.call(GET, request)["trailers"], {"grpc-status": "0"})
            time.sleep(0.5)
        # The preface-only one had no request for 3 s: GOAWAY, then closed.
        self.assertTrue(preface.wait_goaway(2), "no GOAWAY to an idle connection")
        self.assertTrue(closed_within(preface.sock, 2))
        self.assertIn("no HTTP/2 preface", node.log())

    def test_a_request_that_never_completes_is_reset(self):
        node = self.start_node("-request-timeout", "1s")
        client = attacker(node.port)
        self.addCleanup(client.close)
        sid = open_stream(client, b"\x00\x00\x00\x00\x20{\"group\":")  # and no more
        self.assertEqual(resets_until(client, 1, 5), {sid: CANCEL})
        # The connection itself still serves.
        request = framed(json.dumps({"group": "scores", "key": "Tom"}).encode())
        self.assertEqual(client.call(GET, request)["trailers"], {"grpc-status": "0"})
        self.assertIn("not complete within the request timeout", node.log())

    def test_bodies_held_for_incomplete_requests_are_capped_per_connection(self):
        node = self.start_node("-max-conn-buffer-kb", "512", "-request-timeout", "60s")
        client = attacker(node.port)
        self.addCleanup(client.close)
        chunk = b"\x00\x00\x00\xff\x00" + b"x" * 60000  # a 64 KiB request, never ended
        sids = [open_stream(client, chunk) for _ in range(16)]
        resets = resets_until(client, 8, 5)
        # 8 x 60 KB fit in 512 KiB; the rest are reset.
        self.assertEqual(len(resets), 8, resets)
        self.assertTrue(set(resets) <= set(sids[8:]), (resets, sids))
        self.assertEqual(set(resets.values()), {ENHANCE_YOUR_CALM})
        self.assertTrue(get_ok(node), "the node stopped serving others")
        self.assertIn("limit", node.log())

    def test_rss_stays_bounded_under_the_stream_body_attack(self):
        node = self.start_node("-request-timeout", "60s")
        pid = node.proc.pid
        before = rss_bytes(pid)
        clients = [attacker(node.port) for _ in range(8)]
        for c in clients:
            self.addCleanup(c.close)
        chunk = b"\x00\x00\x00\xff\x00" + b"x" * 60000
        # 8 x 300 x 60 KB = 144 MB offered; the server-wide cap is 32 MiB.
        for _ in range(300):
            for c in clients:
                open_stream(c, chunk)
        for c in clients:
            resets_until(c, 300, 0.5)
        grown = rss_bytes(pid) - before
        self.assertLess(grown, 64 << 20, f"RSS grew by {grown >> 20} MiB")
        self.assertTrue(get_ok(node))

    def test_connections_past_the_cap_are_closed_and_service_comes_back(self):
        node = self.start_node("-max-connections", "4")
        node.close_channel()  # the harness's own connection
        request = framed(json.dumps({"group": "scores", "key": "Tom"}).encode())

        def served():
            """A connection the node accepted and answered on, or None: a
            connection closed just before (the harness's, or a refused one)
            may still count against the cap for a moment."""
            c = None
            try:
                c = H2Client(node.port)
                if c.call(GET, request)["trailers"] == {"grpc-status": "0"}:
                    return c
            except (OSError, AssertionError, h2.exceptions.ProtocolError):
                pass  # refused: reset, or closed before the reply
            if c is not None:
                c.close()
            return None

        held = []
        for i in range(4):  # four at once are accepted and served
            held.append(ct.wait_until(served, 5, f"connection {i + 1} of 4 to be served"))
            self.addCleanup(held[-1].close)
        extra = socket.create_connection(("127.0.0.1", node.port))
        self.addCleanup(extra.close)
        self.assertTrue(closed_within(extra, 3), "a fifth connection was kept")
        held.pop().close()
        ct.wait_until(lambda: get_ok(node), 5, "a connection once one closed")
        self.assertIn("refused a connection: 4 are open", node.log())

    def test_at_the_descriptor_limit_the_node_neither_spins_nor_stops(self):
        def low_fd_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        node = self.start_node(preexec=low_fd_limit)
        pid = node.proc.pid
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(120):  # more than the node's descriptors
            socks.append(socket.create_connection(("127.0.0.1", node.port)))
        ct.wait_until(lambda: "cannot accept connections" in node.log(), 5,
                      "the accept failure to be logged")
        ticks = cpu_ticks(pid)
        time.sleep(2)  # measuring CPU over a span: the thing under test is time
        used = (cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK")
        self.assertLess(used, 0.1, f"{used:.2f} s of CPU in 2 s at the descriptor limit")
        self.assertLessEqual(node.log().count("cannot accept connections"), 2)
        for s in socks:
            s.close()
        socks.clear()
        ct.wait_until(lambda: get_ok(node), 10, "service once descriptors are free")


class LogTest(ct.ClusterTest):
    def test_a_newline_in_a_key_cannot_forge_a_line(self):
        node = ct.Node(self.logdir, ct.free_port(), source="demo", args=["-transport", "lean"])
        node.start()
        self.nodes.append(node)
        get_ok(node, "x\n2026-12-03T00:00:00.000 error forged")  # not found
        log = node.log()
        self.assertIn("load key=x\\n2026-12-03T00:00:00.000 error forged", log)
        self.assertFalse(any(line.startswith("2026-12-03T00:00:00.000 error")
                             for line in log.splitlines()), log)

    def test_a_miss_storm_writes_a_bounded_log(self):
        # The harness logs every load; this node keeps the default (sampled).
        node = ct.Node(self.logdir, ct.free_port(), source="synthetic:10",
                       args=["-transport", "lean", "-log-loads", "sampled"])
        node.start()
        self.nodes.append(node)
        client = H2Client(node.port)
        self.addCleanup(client.close)
        started = time.monotonic()
        for i in range(300):
            request = framed(json.dumps({"group": "scores", "key": f"miss-{i}"}).encode())
            self.assertEqual(client.call(GET, request)["trailers"], {"grpc-status": "0"})
        seconds = int(time.monotonic() - started) + 2
        lines = node.log().count("[getter] load key=")
        self.assertLessEqual(lines, 10 * seconds, f"{lines} load lines for 300 misses")
        self.assertGreater(lines, 0)


if __name__ == "__main__":
    ct.run_main(__doc__, "limits_test")
