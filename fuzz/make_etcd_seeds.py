#!/usr/bin/python3
"""Seeds for etcd_response_fuzzer: a few Range and Watch responses in
protobuf's wire format (encoded here by hand: no protobuf module needed).

  /usr/bin/python3 fuzz/make_etcd_seeds.py fuzz/corpus/etcd_response
"""

import pathlib
import sys


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, value):
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def kv(key, mod_revision, value=b""):
    return field(1, key) + field(3, mod_revision) + (field(5, value) if value else b"")


def event(kind, key, revision):
    return (field(1, kind) if kind else b"") + field(2, kv(key, revision))


SEEDS = {
    "range-two": b"\x01" + field(1, field(3, 7)) + field(2, kv(b"lcache/10.0.0.1:9000", 5)) +
    field(2, kv(b"lcache/10.0.0.2:9000", 6)),
    "range-bad-keys": b"\x01" + field(1, field(3, 9)) + field(2, kv(b"lca", 1)) +
    field(2, kv(b"lcache/", 2)) + field(2, kv(b"other/h:1", 3)),
    "watch-put-delete": b"\x00" + field(3, 1) + field(11, event(0, b"lcache/a:1", 10)) +
    field(11, event(1, b"lcache/a:1", 11)),
    "watch-huge-revision": b"\x00" + field(11, event(0, b"lcache/b:2", (1 << 63) - 1)) +
    field(11, event(0, b"lcache/c:3", -1)),
    "watch-cancelled": b"\x00" + field(4, 1) + field(5, 42) + field(6, b"compacted"),
}

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
for name, data in SEEDS.items():
    (out / name).write_bytes(data)
