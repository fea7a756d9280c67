"""The chaos suite's clients and checker.

Readers Get Zipf-distributed keys (s = 0.99) through random nodes with the
Go program's 2 s deadline; the client policy is the one a production client
of a cache cluster has: on any failure, retry once on another node (a fresh
2 s deadline). Writers change keys as a write-through user does: write
version N of the key to the origin (files that the nodes' `dir:` source
reads), then Set ("key@N") or Remove the key through a random node; one
mutation per key at a time.

Every value the origin or a Set ever held for a key is recorded before it
can be read, so the checker knows exactly what the source produced:
  wrong   a value that is not "key@N" for a version N produced for that key;
  stale   a read that started after a Set or Remove of its key returned OK
          and saw an older version. It is `excused` when that mutation
          reported a node that did not acknowledge dropping its copy (the
          documented bound: the node may serve it until it hears again, at
          most -hot-max-age for a hot copy; docs/PROTOCOL.md 7 and 9.2), and a
          violation otherwise;
  late    a stale read of a Set that failed at the client (a deadline, an
          unreachable node): its outcome is unknown, and it may take effect
          at any later time, as Jepsen treats indeterminate operations (a
          paused node applies the Sets queued in its socket when it wakes).
          Reported, not a violation.
"""

import base64
import bisect
import collections
import itertools
import json
import os
import pathlib
import random
import threading
import time

import grpc

GET = "/lcache.LCache/Get"
SET = "/lcache.LCache/Set"
REMOVE = "/lcache.LCache/Remove"
GROUP = "scores"
DEADLINE_S = 2.0


class Origin:
    """One file per key (named by its bytes in hex), read by `-source dir:`."""

    def __init__(self, root):
        self.dir = pathlib.Path(root) / "origin"
        self.dir.mkdir(parents=True, exist_ok=True)

    def write(self, key, value):
        path = self.dir / key.encode().hex()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(value)
        os.replace(tmp, path)


def zipf_cumulative(n, s=0.99):
    weights = [1.0 / (i + 1) ** s for i in range(n)]
    return list(itertools.accumulate(weights))


class Record:
    __slots__ = ("t0", "t1", "ok", "retried", "error")

    def __init__(self, t0, t1, ok, retried, error):
        self.t0, self.t1, self.ok, self.retried, self.error = t0, t1, ok, retried, error


class Workload:
    def __init__(self, addresses, origin, keys=500, readers=6, writers=2):
        self.addresses = list(addresses)
        self.origin = origin
        self.keys = [f"k{i}" for i in range(keys)]
        self.cum = zipf_cumulative(keys)
        self.readers = readers
        self.writers = writers
        self.lock = threading.Lock()
        self.produced = collections.defaultdict(set)  # key -> versions written
        self.floor = {k: (0, 0.0, ()) for k in self.keys}  # version, when OK, unacked
        self.key_locks = {k: threading.Lock() for k in self.keys}
        self.next_version = 1
        self.records = []
        self.wrong = []
        self.stale = []    # (key, seen, floor, node, age s, t0): violations
        self.excused = []  # the same, excused by an unacknowledged node
        self.late = []     # the same, of a Set whose outcome the client never learned
        self.indeterminate = set()  # (key, version) of Sets that failed with an RPC error
        self.mutations = collections.Counter()
        self.stop = threading.Event()
        self.threads = []
        self.stubs = {}
        for a in self.addresses:
            channel = grpc.insecure_channel(a, options=[("grpc.enable_http_proxy", 0)])
            self.stubs[a] = {m: channel.unary_unary(m) for m in (GET, SET, REMOVE)}
            self.stubs[a]["channel"] = channel
        for key in self.keys:
            self.produced[key].add(0)
            origin.write(key, f"{key}@0".encode())

    def pick_key(self, rng):
        return self.keys[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]

    def call(self, address, method, body):
        return self.stubs[address][method](body, timeout=DEADLINE_S)

    # -- readers -------------------------------------------------------------

    def get_once(self, address, key):
        """The value, or raises with a short reason."""
        out = json.loads(self.call(address, GET, json.dumps({"group": GROUP, "key": key}).encode()))
        if out.get("err"):
            raise RuntimeError("in-band: " + out["err"])
        return base64.b64decode(out.get("value", ""))

    def reader(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            key = self.pick_key(rng)
            first = rng.choice(self.addresses)
            with self.lock:
                floor = self.floor[key]
            t0 = time.monotonic()
            error, value, node, retried = None, None, first, False
            for attempt in range(2):
                if attempt == 1:
                    retried = True
                    node = rng.choice([a for a in self.addresses if a != first])
                try:
                    value = self.get_once(node, key)
                    error = None
                    break
                except grpc.RpcError as e:
                    error = e.code().name
                except RuntimeError as e:
                    error = str(e)
            t1 = time.monotonic()
            with self.lock:
                self.records.append(Record(t0, t1, error is None, retried, error))
                if error is None:
                    self.check(key, value, floor, node, t0)

    def check(self, key, value, floor, node, t0):
        name, _, version = value.decode(errors="replace").partition("@")
        if name != key or not version.isdigit() or int(version) not in self.produced[key]:
            self.wrong.append((key, value[:80], node))
            return
        floor_version, when, unacked = floor
        if int(version) < floor_version:
            entry = (key, int(version), floor_version, node, round(t0 - when, 3), t0)
            if (key, int(version)) in self.indeterminate:
                self.late.append(entry)
            else:
                (self.excused if unacked else self.stale).append(entry)

    # -- writers -------------------------------------------------------------

    def writer(self, seed):
        rng = random.Random(seed)
        while not self.stop.is_set():
            key = self.pick_key(rng)
            with self.key_locks[key]:
                with self.lock:
                    version = self.next_version
                    self.next_version += 1
                    self.produced[key].add(version)
                value = f"{key}@{version}".encode()
                self.origin.write(key, value)
                kind = rng.choice(("set", "remove"))
                body = {"group": GROUP, "key": key}
                if kind == "set":
                    body["value"] = base64.b64encode(value).decode()
                node = rng.choice(self.addresses)
                try:
                    out = json.loads(self.call(node, SET if kind == "set" else REMOVE,
                                               json.dumps(body).encode()))
                except grpc.RpcError as e:
                    with self.lock:
                        self.mutations[(kind, e.code().name)] += 1
                        if kind == "set":  # it may still take effect, at any time
                            self.indeterminate.add((key, version))
                    continue
                with self.lock:
                    if out.get("err"):
                        self.mutations[(kind, "in-band")] += 1
                        continue
                    self.mutations[(kind, "OK")] += 1
                    unacked = tuple(out.get("unacked", []))
                    if version > self.floor[key][0]:
                        self.floor[key] = (version, time.monotonic(), unacked)
            # Writes are a tenth of the traffic or so; a writer that never
            # paused would keep most keys' lock taken.
            self.stop.wait(0.01)

    # -- running -------------------------------------------------------------

    def start(self):
        for i in range(self.readers):
            self.threads.append(threading.Thread(target=self.reader, args=(i,), daemon=True))
        for i in range(self.writers):
            self.threads.append(threading.Thread(target=self.writer, args=(1000 + i,), daemon=True))
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        for stubs in self.stubs.values():
            stubs["channel"].close()
