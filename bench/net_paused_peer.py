#!/usr/bin/python3
"""A paused owner: do clients with a 2 s deadline see errors?

Three lcache-nodes (A, B, C) on one ring, synthetic source. lcache-bench
asks A and C only (uniform keys, so about a third of them are owned by B),
with -timeout-ms DEADLINE_MS (2000, the Go client's). After WARMUP seconds of
load, B is SIGSTOPped for PAUSE seconds and then SIGCONTed; the bench runs on
for AFTER seconds. Reports the calls, the client errors by code, p99 and max
latency, and, from A's and C's logs, when they ejected B and how long after
SIGCONT they took it back ("returned").

A node gives a peer call its caller's remaining time less a reserve for the
local fallback (docs/PROTOCOL.md 2.8): with that, a paused owner costs its
keys up to ~1.75 s but no error. Run the previous build beside it to see the
difference (BIN=/path/to/old/build/bin).

  bench/net_paused_peer.py
  BIN=/work/baseline/build/bin bench/net_paused_peer.py

Environment: BIN (build/bin), DEADLINE_MS (2000), WARMUP (3), PAUSE (10),
AFTER (5), CONC (32), KEYS (100000), NODE_ARGS (extra node flags).
"""

import datetime
import json
import os
import pathlib
import re
import signal
import subprocess
import tempfile
import time

from local_cluster import start_nodes, stop_nodes

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(os.environ.get("BIN", ROOT / "build" / "bin"))
DEADLINE_MS = int(os.environ.get("DEADLINE_MS", 2000))
WARMUP = float(os.environ.get("WARMUP", 3))
PAUSE = float(os.environ.get("PAUSE", 10))
AFTER = float(os.environ.get("AFTER", 5))
CONC = int(os.environ.get("CONC", 32))
KEYS = int(os.environ.get("KEYS", 100_000))
NODE_ARGS = os.environ.get("NODE_ARGS", "").split()


def main():
    logdir = tempfile.mkdtemp(prefix="lcache-paused-peer.")
    nodes = start_nodes(BIN, 3, logdir, ["-source", "synthetic:100", *NODE_ARGS])
    ports, procs = nodes.ports, nodes.procs
    try:
        a, b, c = procs
        total = WARMUP + PAUSE + AFTER
        targets = f"127.0.0.1:{ports[0]},127.0.0.1:{ports[2]}"
        bench = subprocess.Popen(
            [str(BIN / "lcache-bench"), "-json", "-targets", targets, "-concurrency", str(CONC),
             "-duration-s", str(total), "-warmup-s", "0", "-keys", str(KEYS),
             "-timeout-ms", str(DEADLINE_MS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(WARMUP)
        b.send_signal(signal.SIGSTOP)
        time.sleep(PAUSE)
        b.send_signal(signal.SIGCONT)
        resumed = datetime.datetime.now()
        out, _ = bench.communicate(timeout=total + 60)
        r = json.loads(out)
        print(f"{BIN}: {r['ok'] + r['errors']} calls, {r['errors']} errors "
              f"{r.get('errors_by_code', {})}, p99 {r['latency_us']['p99'] / 1000:.0f} ms, "
              f"max {r['latency_us'].get('max', 0) / 1000:.0f} ms; B paused {PAUSE:g} s; "
              f"logs in {logdir}")
        for name, port in (("A", ports[0]), ("C", ports[2])):
            text = (pathlib.Path(logdir) / f"node-{port}.log").read_text(errors="replace")
            ejections = len(re.findall(r"peer \S+ ejected", text))
            back = [datetime.datetime.fromisoformat(m) for m in
                    re.findall(r"^(\S+) info peer \S+ returned", text, re.M)]
            back = [t for t in back if t >= resumed]
            print(f"  {name}: {ejections} ejections of B; took B back "
                  f"{'%.2f s' % (back[0] - resumed).total_seconds() if back else 'never'} "
                  f"after SIGCONT")
    finally:
        for p in procs:
            try:
                p.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
        stop_nodes(nodes)


if __name__ == "__main__":
    main()
