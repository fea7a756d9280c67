#!/usr/bin/python3
"""Writes fuzz/corpus/h2_server/: whole client connections as Go's gRPC
client sends them (python3-h2 encodes the frames and HPACK headers): a Get
that hits, one that misses, a not-found, a Set, bad JSON, a deadline, a
reset stream, two streams, a Replicate and a SetReplica. Run once; the files are committed."""

import json
import pathlib
import struct

import h2.config
import h2.connection

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "h2_server"


def grpc(message):
    return struct.pack(">BI", 0, len(message)) + message


def connection(calls):
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    for i, (method, body, extra) in enumerate(calls):
        sid = 1 + 2 * i
        headers = [(":method", "POST"), (":scheme", "http"), (":path", method),
                   (":authority", "127.0.0.1"), ("content-type", "application/grpc"),
                   ("te", "trailers")] + extra
        c.send_headers(sid, headers)
        c.send_data(sid, grpc(json.dumps(body).encode()), end_stream=True)
        if ("reset", "1") in extra:
            c.reset_stream(sid)
    return c.data_to_send()


GET = "/lcache.LCache/Get"
seeds = {
    "get_hit": [(GET, {"group": "scores", "key": "Tom"}, [])],
    "get_miss": [(GET, {"group": "scores", "key": "k1"}, [("grpc-timeout", "2S")])],
    "get_not_found": [(GET, {"group": "scores", "key": "missing-1"}, [])],
    "unknown_group": [(GET, {"group": "nope", "key": "k"}, [])],
    "set": [("/lcache.LCache/Set", {"group": "scores", "key": "k", "value": "eA=="}, [])],
    "forwarded": [(GET, {"group": "scores", "key": "k2"}, [("lcache-forwarded", "1")])],
    "two_streams": [(GET, {"group": "scores", "key": "a"}, []),
                    (GET, {"group": "scores", "key": "b"}, [("grpc-timeout", "10m")])],
    "reset": [(GET, {"group": "scores", "key": "slow"}, [("reset", "1")])],
    "replicate": [("/lcache.LCache/Replicate",
                   {"group": "scores", "key": "r", "value": "eA==", "ttl_ms": 60000},
                   [("lcache-forwarded", "1"), ("grpc-timeout", "1S")])],
    "set_replica": [("/lcache.LCache/SetReplica", {"group": "scores", "key": "r", "value": "eQ=="},
                     [("lcache-forwarded", "1")])],
}
OUT.mkdir(parents=True, exist_ok=True)
for name, calls in seeds.items():
    (OUT / name).write_bytes(connection(calls))
(OUT / "bad_json").write_bytes(connection([(GET, {"group": "scores"}, [])]).replace(
    b'{"group": "scores"}', b'{"group": "sc\\u'))
(OUT / "health").write_bytes(connection([("/grpc.health.v1.Health/Check", {}, [])]))
