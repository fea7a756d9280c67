#!/usr/bin/python3
"""A mixed trace for lcache-sim (--format keys): two Zipf populations
interleaved, one of them moving, and one-pass scans of new keys.

usage: mixed-trace.py [SEED] > mixed.keys     (needs python3-numpy)

8 phases of 250k requests: 150k from population A (Zipf 0.8 over 200k keys,
stable) shuffled with 100k from B (Zipf 1.0 over 50k keys whose ranks move
by 7k keys each phase); after every second phase, a scan of 30k keys never
seen before. 2.12M requests, 347k distinct keys. Deterministic per SEED.
"""
import numpy as np, sys
rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
def zipf_ranks(n, a, size):
    w = 1.0 / np.arange(1, n + 1) ** a
    c = np.cumsum(w); c /= c[-1]
    return np.searchsorted(c, rng.random(size))
out = []
N1, N2 = 200_000, 50_000
next_scan = 10_000_000
for phase in range(8):
    a = zipf_ranks(N1, 0.8, 150_000)                 # stable population A
    b = (zipf_ranks(N2, 1.0, 100_000) + phase * 7_000) % N2 + N1  # shifting population B
    mix = np.concatenate([a, b]); rng.shuffle(mix)
    out.append(mix)
    if phase % 2 == 1:                               # a one-pass scan of new keys
        out.append(np.arange(next_scan, next_scan + 30_000)); next_scan += 30_000
keys = np.concatenate(out)
sys.stdout.write("\n".join(map(str, keys.tolist())) + "\n")
