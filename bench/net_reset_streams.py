#!/usr/bin/python3
"""A hostile client against one lcache-node: CONNS connections, each sending
STREAMS requests for uncached keys as HEADERS+DATA+RST_STREAM (a call given up
at once); once the node has counted them all (lcache_server_requests_total on
its -http listener), one legitimate miss on a new connection. Reports whether and
how fast the legitimate miss was answered and how many getter loads the node
ran (its `[getter] load` lines, counted after it exits on SIGTERM, which lets
queued loads finish). The node's source is synthetic:100:5 (5 ms per load).

    bench/net_reset_streams.py build/bin/lcache-node [CONNS=10] [STREAMS=1000]

Needs Debian's python3-h2. docs/BENCHMARKS.md has the figures."""
import json, pathlib, re, socket, struct, subprocess, sys, tempfile, time
import h2.config, h2.connection, h2.events

node_bin = sys.argv[1]
conns = int(sys.argv[2]) if len(sys.argv) > 2 else 10
streams = int(sys.argv[3]) if len(sys.argv) > 3 else 1000

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def framed(m): return struct.pack(">BI", 0, len(m)) + m

port, hport = free_port(), free_port()
log = tempfile.NamedTemporaryFile(delete=False, suffix=".log")
proc = subprocess.Popen([node_bin, "-addr", f"127.0.0.1:{port}", "-source", "synthetic:100:5", "-log-loads", "all",
                         "-http", f"127.0.0.1:{hport}"], stdout=log, stderr=subprocess.STDOUT)


def server_requests():
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    text = opener.open(f"http://127.0.0.1:{hport}/metrics", timeout=5).read().decode()
    m = re.search(r'^lcache_server_requests_total\{group="scores"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close(); break
    except OSError: time.sleep(0.05)

def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection(); s.sendall(c.data_to_send()); return s, c

def headers():
    return [(":method", "POST"), (":scheme", "http"), (":path", "/lcache.LCache/Get"),
            (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc+json"), ("te", "trailers")]

hostile = []
for i in range(conns):
    s, c = connect()
    for j in range(streams):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, headers())
        c.send_data(sid, framed(json.dumps({"group": "scores", "key": f"h{i}-{j}"}).encode()), end_stream=True)
        c.reset_stream(sid, error_code=8)
    s.sendall(c.data_to_send())
    hostile.append(s)
while server_requests() < conns * streams:
    time.sleep(0.01)
t0 = time.monotonic()
s, c = connect()
sid = c.get_next_available_stream_id()
c.send_headers(sid, headers()); c.send_data(sid, framed(b'{"group":"scores","key":"wanted"}'), end_stream=True)
s.sendall(c.data_to_send())
done = False
while not done:
    data = s.recv(65536)
    if not data: break
    for ev in c.receive_data(data):
        if isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid: done = True
    s.sendall(c.data_to_send())
took = time.monotonic() - t0
proc.terminate(); proc.wait(30)  # SIGTERM: queued loads run (or are dropped), then exit
loads = len(re.findall(r"\[getter\] load key=", pathlib.Path(log.name).read_text()))
print(f"{conns}x{streams} reset streams: legitimate miss answered={done} in {took*1000:.0f} ms "
      f"(after all were received); getter loads {loads}")
