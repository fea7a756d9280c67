#!/usr/bin/python3
"""Origins against real servers: lcache-node -source http://... in front of
Python's http.server (tests/http_origin_server.py), and -source postgres://
in front of Debian's PostgreSQL 15, both started here on free 127.0.0.1
ports with temporary directories. PostgreSQL runs as the `postgres` user
when the test runs as root (CI does), as the caller otherwise.

What reached the origin is counted on the origin's side: the HTTP server
counts requests and connections; in PostgreSQL the query calls a function
that counts its calls in a table.

Run: /usr/bin/python3 tests/origin_test.py --bin build/bin [unittest args]
"""

import base64
import concurrent.futures
import json
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cluster_test as ct  # noqa: E402  (the node harness)
import http_origin_server  # noqa: E402

PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")
PG_ADMIN_PASSWORD = "admin-pw-4f1c"
APP_PASSWORD = "app-pw-9d2e"  # must never appear in a node's log


def answer(node, key, timeout=5.0):
    """A Get's decoded response: {"value": bytes} (+ "ttl_ms") or {"err": text}."""
    resp = json.loads(node.call(ct.request(key), timeout=timeout))
    if "value" in resp or "err" not in resp:
        resp["value"] = base64.b64decode(resp.get("value", ""))
    return resp


def open_fds(node):
    return len(os.listdir(f"/proc/{node.proc.pid}/fd"))


def run_bench(node, first_key_count, requests):
    """lcache-bench: `requests` Gets of k0, k1, ... (each a miss) at node."""
    r = subprocess.run([str(ct.BIN_DIR / "lcache-bench"), "-targets", node.addr, "-dist",
                        "sequential", "-keys", str(first_key_count), "-requests", str(requests),
                        "-concurrency", "16", "-json"],
                       capture_output=True, text=True, timeout=300)
    # It exits 1 when any call failed (a not-found counts): the JSON says which.
    if r.returncode not in (0, 1) or not r.stdout.strip():
        raise AssertionError(f"lcache-bench failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


class OriginTest(ct.ClusterTest):
    def start_with_http(self, source, args=(), n=1):
        """Nodes with an admin listener each (node.http_port)."""
        nodes = []
        ports = [ct.free_port() for _ in range(n)]
        addrs = [f"127.0.0.1:{p}" for p in ports]
        for p in ports:
            hp = ct.free_port()
            node = ct.Node(self.logdir, p, peers=addrs if n > 1 else (), source=source,
                           args=list(args) + ["-http", f"127.0.0.1:{hp}"])
            node.http_port = hp
            self.nodes.append(node)
            nodes.append(node)
        for node in nodes:
            node.start()
        return nodes

    def metrics(self, node):
        with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, node, name):
        total = 0
        for line in self.metrics(node).splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(None, 1)[1])
        return total


class HttpOriginTest(OriginTest):
    def setUp(self):
        super().setUp()
        self.origin = http_origin_server.Origin().start()
        self.addCleanup(self.origin.stop)
        self.url = f"http://127.0.0.1:{self.origin.port}/items/{{key}}"

    def test_values_errors_and_lifetimes_as_the_origin_says(self):
        (node,) = self.start_with_http(self.url, args=["-origin-timeout-ms", "800",
                                                       "-origin-max-bytes", str(1 << 20)])
        # 200: the body, kept (a second Get does not reach the origin).
        self.assertEqual(node.get("apple"), b"v:apple")
        self.assertEqual(node.get("apple"), b"v:apple")
        self.assertEqual(self.origin.count("/items/apple"), 1)
        # Any byte of a key reaches the origin escaped, dot segments as sent.
        self.assertEqual(node.get("a b/../%?#\u00e9"), "v:a b/../%?#\u00e9".encode())
        self.assertEqual(self.origin.count("/items/a%20b%2F..%2F%25%3F%23%C3%A9"), 1)
        self.assertEqual(node.get(".."), b"v:..")
        self.assertEqual(self.origin.count("/items/.."), 1)
        # 404 and 410: not found, and not kept.
        for key in ("missing-1", "gone-1"):
            for _ in range(2):
                self.assertEqual(answer(node, key), {"err": ct.NOT_FOUND})
            self.assertEqual(self.origin.count(f"/items/{key}"), 2)
        # Other statuses: an error naming the status; nothing kept.
        self.assertIn("answered HTTP 500", answer(node, "broken-1")["err"])
        self.assertIn("answered HTTP 503", answer(node, "busy-1")["err"])
        self.assertIn("answered HTTP 301", answer(node, "moved-1")["err"])
        # Too slow: the load fails at -origin-timeout-ms, not at the client's deadline.
        t0 = time.monotonic()
        self.assertIn("did not answer within 800ms", answer(node, "slow-1")["err"])
        self.assertLess(time.monotonic() - t0, 2.0)
        # Over -origin-max-bytes: refused, and the node is fine; also a body
        # that announces no length (chunked), stopped as it streams past it.
        self.assertIn("over the limit of 1048576 bytes", answer(node, "huge-1")["err"])
        self.assertIn("over the limit of 1048576 bytes", answer(node, "stream-1")["err"])
        self.assertEqual(node.get("apple"), b"v:apple")
        # no-store: served every time, never kept.
        for _ in range(3):
            # ttl_ms 0: expired on arrival, so no node it is forwarded to keeps it.
            self.assertEqual(answer(node, "nostore-1"), {"value": b"v:nostore-1", "ttl_ms": 0})
        self.assertEqual(self.origin.count("/items/nostore-1"), 3)
        # max-age=60 with Age 10: 50 s left; Expires 30 s after Date: 30 s.
        maxage = answer(node, "maxage-1")
        self.assertEqual(maxage["value"], b"v:maxage-1")
        self.assertTrue(45_000 <= maxage["ttl_ms"] <= 50_000, maxage)
        expires = answer(node, "expires-1")
        self.assertTrue(25_000 <= expires["ttl_ms"] <= 30_000, expires)
        answer(node, "maxage-1")
        self.assertEqual(self.origin.count("/items/maxage-1"), 1)

        # The origin's figures, as the origin counted them.
        m = self.metrics(node)
        self.assertIn('lcache_origin_requests_total{group="scores",origin="http"} '
                      f'{self.origin.total()}\n', m)
        self.assertIn('lcache_origin_not_found_total{group="scores",origin="http"} 4\n', m)
        self.assertIn('lcache_origin_errors_total{group="scores",origin="http"} 6\n', m)
        self.assertIn('lcache_origin_uncacheable_total{group="scores",origin="http"} 3\n', m)
        self.assertIn('lcache_origin_request_duration_seconds_count{group="scores",'
                      f'origin="http"}} {self.origin.total()}\n', m)

    def test_https_with_the_origins_ca_and_not_without(self):
        from etcd_test import make_tls
        tls = make_tls(self.logdir)
        origin = http_origin_server.Origin(tls=(tls / "server.crt", tls / "server.key")).start()
        self.addCleanup(origin.stop)
        url = f"https://127.0.0.1:{origin.port}/items/{{key}}"
        trusting, distrusting = self.start_with_http(url, ["-origin-ca", str(tls / "ca.crt")]) + \
            self.start_with_http(url)
        self.assertEqual(trusting.get("secure"), b"v:secure")
        self.assertEqual(origin.count("/items/secure"), 1)
        err = answer(distrusting, "secure-2")["err"]
        self.assertIn(f"origin https://127.0.0.1:{origin.port}", err)
        self.assertIn("certificate", err)
        self.assertEqual(origin.count("/items/secure-2"), 0)

    def test_origin_down_is_a_quick_error_and_cached_values_stay(self):
        (node,) = self.start_with_http(self.url)
        self.assertEqual(node.get("kept"), b"v:kept")
        self.origin.stop()
        t0 = time.monotonic()
        err = answer(node, "not-kept")["err"]
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertIn(f"origin http://127.0.0.1:{self.origin.port}", err)
        self.assertEqual(node.get("kept"), b"v:kept")
        self.assertEqual(self.metric(node, "lcache_origin_errors_total"), 1)

    def test_one_origin_request_for_a_hundred_concurrent_gets_through_three_nodes(self):
        nodes = self.start_with_http(self.url, n=3)

        def one(i):
            return nodes[i % 3].get("lazy-1", timeout=10)

        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            values = list(pool.map(one, range(100)))
        self.assertEqual(values, [b"v:lazy-1"] * 100)
        self.assertEqual(self.origin.count("/items/lazy-1"), 1)

    def test_misses_reuse_connections_and_leave_descriptors_flat(self):
        (node,) = self.start_with_http(self.url, args=["-cache-mb", "1"])
        run_bench(node, 100_000, 2_000)  # every connection the loads will use, opened
        before = open_fds(node)
        result = run_bench(node, 100_000, 100_000)
        self.assertEqual(result["ok"], 100_000, result)
        self.assertLessEqual(open_fds(node), before + 2)
        # One connection per load thread at most (-load-threads 8), all reused.
        with self.origin.lock:
            connections = self.origin.connections
        self.assertLessEqual(connections, 8)
        self.assertGreaterEqual(self.origin.total(), 100_000)


class Postgres:
    """One PostgreSQL 15 server on 127.0.0.1, a data dir of its own, as a
    non-root user: `postgres` when we are root."""

    def __init__(self):
        self.port = ct.free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="lcache-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        if self.user:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.proc = None
        pwfile = self.dir / "admin.pw"
        pwfile.write_text(PG_ADMIN_PASSWORD + "\n")
        if self.user:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "admin", "--pwfile",
                  str(pwfile), "--auth-host=scram-sha-256", "--auth-local=reject",
                  "-E", "UTF8", "--locale=C.UTF-8"])

    def as_user(self):
        return {"user": self.user.pw_uid, "group": self.user.pw_gid} if self.user else {}

    def run(self, cmd):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **self.as_user())
        if r.returncode != 0:
            raise AssertionError(f"{cmd[0]} failed: {r.stdout}{r.stderr}")
        return r.stdout

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", "fsync=off", "-c", "max_connections=60"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **self.as_user())
        log.close()
        ct.wait_until(lambda: self.ready() or self.proc.poll() is not None, 30,
                      "postgres to accept connections")
        if self.proc.poll() is not None:
            raise AssertionError(f"postgres exited:\n{self.log_path.read_text()}")

    def ready(self):
        return subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p",
                               str(self.port)], capture_output=True).returncode == 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            self.proc.wait(30)

    def sql(self, text, db="shop"):
        env = dict(os.environ, PGPASSWORD=PG_ADMIN_PASSWORD)
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                            "127.0.0.1", "-p", str(self.port), "-U", "admin", "-d", db,
                            "-c", text], capture_output=True, text=True, env=env, timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"psql failed: {r.stderr}")
        return r.stdout.strip()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresOriginTest(OriginTest):
    @classmethod
    def setUpClass(cls):
        cls.pg = Postgres()
        try:
            cls.pg.start()
            cls.pg.sql("CREATE DATABASE shop", db="postgres")
            cls.pg.sql(f"""
                CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}';
                CREATE TABLE items (k text PRIMARY KEY, v text);
                CREATE TABLE calls (k text PRIMARY KEY, n int NOT NULL);
                CREATE TABLE blobs (k text PRIMARY KEY, b bytea);
                CREATE TABLE dups (k text, v text);
                CREATE TABLE nums (id int PRIMARY KEY, v text);
                INSERT INTO items VALUES ('Tom', '630'), ('Jack', '589'), ('nothing', NULL),
                                         ('lazy-1', 'L'), ('big', repeat('x', 5000));
                INSERT INTO blobs VALUES ('bin', '\\x00ff0a0d22'::bytea);
                INSERT INTO dups VALUES ('twice', 'a'), ('twice', 'b');
                INSERT INTO nums VALUES (7, 'seven');
                -- Counts its calls (what reached the origin); takes 3 s
                -- for keys "slow...", 0.3 s for keys "lazy...".
                CREATE FUNCTION lookup(key text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
                BEGIN
                  INSERT INTO calls VALUES (key, 1)
                    ON CONFLICT (k) DO UPDATE SET n = calls.n + 1;
                  PERFORM pg_sleep(CASE WHEN key LIKE 'slow%' THEN 3
                                        WHEN key LIKE 'lazy%' THEN 0.3 ELSE 0 END);
                  RETURN (SELECT v FROM items WHERE k = key);
                END $$;
                GRANT SELECT ON items, blobs, dups, nums TO app;
                GRANT SELECT, INSERT, UPDATE ON calls TO app;
            """)
        except BaseException:
            cls.pg.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()

    def setUp(self):
        super().setUp()
        self.password_file = pathlib.Path(self.logdir) / "pgpass"
        self.password_file.write_text(APP_PASSWORD + "\n")
        self.pg.sql("TRUNCATE calls")

    def source(self, user="app"):
        return f"postgres://{user}@127.0.0.1:{self.pg.port}/shop"

    def node_args(self, query, *extra):
        return ["-source-query", query, "-source-password-file", str(self.password_file)] + \
            list(extra)

    def calls(self, key):
        n = self.pg.sql(f"SELECT n FROM calls WHERE k = '{key}'")
        return int(n) if n else 0

    def run_node(self, source, args, timeout=15):
        """A node that must not start: its exit code and output."""
        r = subprocess.run([str(ct.BIN_DIR / "lcache-node"), "-addr",
                            f"127.0.0.1:{ct.free_port()}", "-source", source] + args,
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout + r.stderr

    def test_rows_become_values_and_the_rest_clear_errors(self):
        (node,) = self.start_with_http(self.source(), self.node_args(
            "SELECT lookup($1)", "-origin-max-bytes", "4096"))
        self.assertEqual(node.get("Tom"), b"630")
        self.assertEqual(node.get("Tom"), b"630")
        self.assertEqual(self.calls("Tom"), 1)
        self.assertIn("5000 bytes, over the limit of 4096", answer(node, "big")["err"])
        self.assertEqual(answer(node, "nobody"), {"err": ct.NOT_FOUND})
        self.assertEqual(answer(node, "nothing"), {"err": ct.NOT_FOUND})  # NULL
        self.assertIn("NUL byte", answer(node, "a\x00b")["err"])
        self.assertEqual(self.metric(node, "lcache_origin_requests_total"), 5)
        self.assertEqual(self.metric(node, "lcache_origin_not_found_total"), 2)
        self.assertEqual(self.metric(node, "lcache_origin_errors_total"), 2)

        # bytea: the bytes themselves.
        (blobs,) = self.start_with_http(self.source(),
                                        self.node_args("SELECT b FROM blobs WHERE k = $1"))
        self.assertEqual(blobs.get("bin"), b"\x00\xff\n\r\"")
        # Two rows for one key; a key the column's type rejects.
        (dups,) = self.start_with_http(self.source(),
                                       self.node_args("SELECT v FROM dups WHERE k = $1"))
        self.assertIn("returned more than one row for one key", answer(dups, "twice")["err"])
        self.assertEqual(answer(dups, "once"), {"err": ct.NOT_FOUND})  # the pool goes on
        (nums,) = self.start_with_http(self.source(),
                                       self.node_args("SELECT v FROM nums WHERE id = $1"))
        self.assertEqual(nums.get("7"), b"seven")
        self.assertIn("rejects the key: 22P02", answer(nums, "seven")["err"])
        self.assertEqual(nums.get("7"), b"seven")  # the connection still serves

    def test_a_query_that_cannot_work_stops_the_node_at_start(self):
        code, out = self.run_node(self.source(), self.node_args("SELECT v FROM nowhere WHERE k = $1"))
        self.assertEqual(code, 2, out)
        self.assertIn('relation "nowhere" does not exist', out)
        code, out = self.run_node(self.source(), self.node_args("SELECT k, v FROM items WHERE k = $1"))
        self.assertEqual(code, 2, out)
        self.assertIn("one parameter ($1, the key) and return one column", out)
        code, out = self.run_node(f"postgres://app:{APP_PASSWORD}@127.0.0.1:{self.pg.port}/shop",
                                  ["-source-query", "SELECT lookup($1)"])
        self.assertEqual(code, 2, out)
        self.assertIn("holds a password", out)
        self.assertNotIn(APP_PASSWORD, out)
        # A URL libpq cannot parse: its own message would quote the password.
        code, out = self.run_node(f"postgres://app:{APP_PASSWORD}%zz@127.0.0.1/shop",
                                  ["-source-query", "SELECT lookup($1)"])
        self.assertEqual(code, 2, out)
        self.assertIn("cannot parse the URL", out)
        self.assertNotIn(APP_PASSWORD, out)

    def test_wrong_credentials_fail_loads_without_showing_the_password(self):
        self.password_file.write_text("not-" + APP_PASSWORD + "\n")
        (node,) = self.start_with_http(self.source(), self.node_args("SELECT lookup($1)"))
        err = answer(node, "Tom")["err"]
        self.assertIn("password authentication failed", err)
        # Again: the same reason (retried, or quoted by the backoff).
        self.assertIn("password authentication failed", answer(node, "Tom")["err"])
        self.assertNotIn(APP_PASSWORD, node.log() + err)
        self.assertIn("not reachable at start", node.log())

    def test_a_slow_query_times_out_and_the_pool_goes_on(self):
        (node,) = self.start_with_http(self.source(), self.node_args(
            "SELECT lookup($1)", "-origin-timeout-ms", "500", "-origin-connections", "2"))
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            errs = list(pool.map(lambda i: answer(node, f"slow-{i}")["err"], range(4)))
        took = time.monotonic() - t0
        # Two query and time out; the others time out waiting for a connection.
        for err in errs:
            self.assertRegex(err, "did not answer within 500ms|stayed busy|no connection within")
        self.assertLess(took, 2.5)
        self.assertEqual(node.get("Jack"), b"589")
        # The server stopped the queries too: no backend still sleeps.
        ct.wait_until(lambda: self.pg.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lcache' "
            "AND state = 'active'") == "0", 5, "the slow queries to end on the server")

    def test_origin_down_then_back(self):
        (node,) = self.start_with_http(self.source(), self.node_args("SELECT lookup($1)"))
        self.assertEqual(node.get("Tom"), b"630")
        self.pg.stop()
        try:
            t0 = time.monotonic()
            err = answer(node, "Jack")["err"]
            self.assertLess(time.monotonic() - t0, 2.0)
            self.assertIn("origin postgres", err)
            self.assertEqual(node.get("Tom"), b"630")  # cached values stay
        finally:
            self.pg.start()
        # Back: loads work again once the backoff (at most 5 s) has passed.
        ct.wait_until(lambda: "value" in answer(node, "Jack"), 10, "loads to work again")
        self.assertEqual(node.get("Jack"), b"589")

    def test_a_server_restart_costs_no_load_an_error(self):
        (node,) = self.start_with_http(self.source(), self.node_args(
            "SELECT lookup($1)", "-origin-connections", "4"))
        # Four connections open and idle: four slow loads at once.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            self.assertEqual(set(pool.map(lambda i: answer(node, f"lazy-{i + 10}")["err"],
                                          range(4))), {ct.NOT_FOUND})
        self.assertEqual(int(self.pg.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lcache'")), 4)
        self.pg.stop()
        self.pg.start()
        # Every idle connection is broken now; the first load finds out, drops
        # them all and retries on a fresh one: no error for anyone.
        self.assertEqual(node.get("Tom"), b"630")
        self.assertEqual(node.get("Jack"), b"589")
        self.assertEqual(self.metric(node, "lcache_origin_errors_total"), 0)

    def test_one_query_for_a_hundred_concurrent_gets_through_three_nodes(self):
        nodes = self.start_with_http(self.source(), self.node_args("SELECT lookup($1)"), n=3)
        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            values = list(pool.map(lambda i: nodes[i % 3].get("lazy-1", timeout=10), range(100)))
        self.assertEqual(values, [b"L"] * 100)
        self.assertEqual(self.calls("lazy-1"), 1)

    def test_misses_leave_descriptors_flat(self):
        (node,) = self.start_with_http(self.source(), self.node_args(
            "SELECT v FROM items WHERE k = $1"))
        run_bench(node, 100_000, 2_000)
        before = open_fds(node)
        result = run_bench(node, 100_000, 100_000)
        self.assertEqual(result["errors_by_code"], {f"err: {ct.NOT_FOUND}": 100_000}, result)
        self.assertLessEqual(open_fds(node), before + 2)
        self.assertLessEqual(int(self.pg.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lcache'")), 8)


def main():
    def configure(_):
        if not (PG_BIN / "postgres").is_file() or shutil.which("psql") is None:
            sys.exit("origin_test: PostgreSQL 15 is needed (scripts/setup installs postgresql-15)")

    ct.run_main(__doc__, "origin_test", configure=configure)


if __name__ == "__main__":
    main()
