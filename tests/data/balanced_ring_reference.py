#!/usr/bin/env python3
"""Reference owners for the balanced ring (RingKind::kBalanced), independent
of the C++ code: each peer P gets points xxh3_64(P, seed=i) for i in
range(replicas), written into a dict in peer order so a later peer
overwrites an earlier one on the same point; a key goes to the first point
>= xxh3_64(key), wrapping to the smallest.

Needs Debian's python3-xxhash (only to regenerate the figures in
tests/hash_ring_test.cc; the tests do not run this).

Run: /usr/bin/python3 tests/data/balanced_ring_reference.py
"""

import bisect
import collections

import xxhash

PEERS = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
REPLICAS = 2000
KEYS = ["Tom", "Jack", "Sam"] + [f"key-{n}" for n in range(20)]


def xxh3(s, seed=0):
    return xxhash.xxh3_64_intdigest(s.encode(), seed=seed)


def build(peers, replicas):
    owner_of_point = {}
    for peer in peers:
        for i in range(replicas):
            owner_of_point[xxh3(peer, i)] = peer
    return sorted(owner_of_point), owner_of_point


def owner(ring, key):
    points, owner_of_point = ring
    idx = bisect.bisect_left(points, xxh3(key))
    if idx == len(points):
        idx = 0
    return owner_of_point[points[idx]]


def main():
    print("Known answers (Xxh3KnownAnswers):")
    for s, seed in (("", 0), ("Tom", 0), ("key-0", 0), ("127.0.0.1:9002", 1999)):
        print(f'      {{"{s}", {seed}, {xxh3(s, seed)}u}},')
    ring = build(PEERS, REPLICAS)
    print("Owners (BalancedOwnersMatchReference):")
    for key in KEYS:
        print(f'      {{"{key}", "{owner(ring, key)}"}},')
    print("Keys per peer over key-0..key-99999 (BalancedOwnerCountsMatchReference):")
    for n in (3, 10):
        peers = [f"127.0.0.1:{9001 + i}" for i in range(n)]
        ring = build(peers, REPLICAS)
        counts = collections.Counter(owner(ring, f"key-{k}") for k in range(100000))
        print(f"      {{{n}, {{{', '.join(str(counts[p]) for p in peers)}}}}},")


if __name__ == "__main__":
    main()
