#!/usr/bin/env python3
"""Reference owners for tests/hash_ring_test.cc, independent of the C++ code.

A transcription of the Go program's consistent hash (groupcache style):
each peer P gets points crc32(str(i) + P) for i in range(replicas), written
into a dict in peer order so a later peer overwrites an earlier one on the
same point; a key goes to the first point >= crc32(key), wrapping to the
smallest. Python's zlib.crc32 is CRC-32 IEEE, as Go's crc32.ChecksumIEEE.

Run: python3 tests/data/ring_reference.py
"""

import bisect
import collections
import zlib

PEERS = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
REPLICAS = 50
KEYS = ["Tom", "Jack", "Sam"] + [f"key-{n}" for n in range(20)]


def crc32(s):
    return zlib.crc32(s.encode()) & 0xFFFFFFFF


def build(peers, replicas):
    owner_of_point = {}
    for peer in peers:
        for i in range(replicas):
            owner_of_point[crc32(str(i) + peer)] = peer
    return sorted(owner_of_point), owner_of_point


def owner(ring, key):
    points, owner_of_point = ring
    idx = bisect.bisect_left(points, crc32(key))
    if idx == len(points):
        idx = 0
    return owner_of_point[points[idx]]


def main():
    ring = build(PEERS, REPLICAS)
    print("Owners (OwnersMatchGoReference):")
    for key in KEYS:
        print(f'      {{"{key}", "{owner(ring, key)}"}},  // crc32 {crc32(key)}')

    print("Keys per peer over key-0..key-99999 (OwnerCountsMatchGoReference):")
    for n in (3, 5, 10):
        peers = [f"127.0.0.1:{9001 + i}" for i in range(n)]
        ring = build(peers, REPLICAS)
        counts = collections.Counter(owner(ring, f"key-{k}") for k in range(100000))
        print(f"      {{{n}, {{{', '.join(str(counts[p]) for p in peers)}}}}},")


if __name__ == "__main__":
    main()
