#!/usr/bin/python3
"""Tables and target checks for docs/EVICTION.md from eviction-lab's CSVs.

usage: eviction-summary.py DIR   (reads DIR/*.csv, prints Markdown)
"""
import csv
import glob
import os
import sys

ORDER = ["zipf-0.6", "zipf-0.8", "zipf-0.99", "zipfscan-0.8", "shift-0.9", "loop-100000"]
POLICIES = ["lru", "lru2", "tinylfu", "tinylfu-fixed", "arc", "opt"]


def load(path):
    rows = {}
    trace = None
    for r in csv.DictReader(open(path)):
        trace = r["trace"]
        rows.setdefault(int(r["size"]), {})[r["policy"]] = float(r["hit_ratio"])
    return trace, rows


def main():
    d = sys.argv[1]
    files = {os.path.basename(p)[:-4]: p for p in glob.glob(os.path.join(d, "*.csv"))}
    checks = []
    print("<!-- Written by scripts/eviction-lab (eviction-summary.py); the image paths are")
    print("     relative to docs/, for pasting into docs/EVICTION.md. -->\n")
    for name in [n for n in ORDER if n in files] + sorted(set(files) - set(ORDER)):
        trace, rows = load(files[name])
        sizes = sorted(rows)
        print(f"### {trace}\n")
        print(f"![{trace}](eviction/{name}.png)\n")
        print("| size | " + " | ".join(POLICIES) + " | tinylfu - best(lru,lru2,arc) |")
        print("|---:|" + "---:|" * (len(POLICIES) + 1))
        for s in sizes:
            r = rows[s]
            best = max(r["lru"], r["lru2"], r["arc"])
            gap = 100 * (r["tinylfu"] - best)
            cells = " | ".join(f"{100 * r[p]:.2f}" for p in POLICIES)
            print(f"| {s} | {cells} | {gap:+.2f} |")
            checks.append((trace, s, "tinylfu >= best(lru,lru2,arc) - 1 point", gap >= -1.0, f"{gap:+.2f}"))
            if trace.startswith("zipf"):
                d2 = 100 * (r["lru2"] - r["lru"])
                checks.append((trace, s, "lru2 > lru", d2 > 0, f"{d2:+.2f}"))
            if trace.startswith("loop"):
                keys = int(trace.split(":")[1])
                if s >= 0.4 * keys:
                    frac = r["tinylfu"] / r["opt"] if r["opt"] > 0 else 0
                    checks.append((trace, s, "tinylfu >= 90% of opt", frac >= 0.9, f"{100 * frac:.1f}%"))
        print()
    print("### Targets, checked\n")
    failed = [c for c in checks if not c[3]]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks pass.\n")
    if failed:
        print("| trace | size | target | value |\n|---|---:|---|---:|")
        for t, s, what, _, v in failed:
            print(f"| {t} | {s} | {what} | {v} |")
        print()


if __name__ == "__main__":
    main()
