#!/usr/bin/python3
"""Tables and target checks for docs/EVICTION.md from eviction-lab's CSVs.

usage: eviction-summary.py DIR   (reads DIR/*.csv, prints Markdown)
"""
import csv
import glob
import os
import sys

ORDER = ["OLTP", "zipf-0.6", "zipf-0.8", "zipf-0.99", "zipfscan-0.8", "shift-0.9", "mixed",
         "loop-100000"]
POLICIES = ["lru", "lru2", "tinylfu", "tinylfu-fixed", "arc", "sieve", "s3fifo", "lfu", "opt"]


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
    means = []  # (trace, mean of tinylfu - arc over its sizes)
    print("<!-- Written by scripts/eviction-lab (eviction-summary.py); the image paths are")
    print("     relative to docs/, for pasting into docs/EVICTION.md. -->\n")
    for name in [n for n in ORDER if n in files] + sorted(set(files) - set(ORDER)):
        trace, rows = load(files[name])
        sizes = sorted(rows)
        print(f"### {trace}\n")
        print(f"![{trace}](eviction/{name}.png)\n")
        print("| size | " + " | ".join(POLICIES) + " | tinylfu - max(lru,arc) | tinylfu - arc |")
        print("|---:|" + "---:|" * (len(POLICIES) + 2))
        gaps_arc = []
        for s in sizes:
            r = rows[s]
            gap = 100 * (r["tinylfu"] - max(r["lru"], r["arc"]))
            gap_arc = 100 * (r["tinylfu"] - r["arc"])
            gaps_arc.append(gap_arc)
            cells = " | ".join(f"{100 * r[p]:.2f}" if p in r else "" for p in POLICIES)
            print(f"| {s} | {cells} | {gap:+.2f} | {gap_arc:+.2f} |")
            checks.append((trace, s, "tinylfu >= max(lru,arc) - 0.5 point", gap >= -0.5, f"{gap:+.2f}"))
        means.append((trace, sum(gaps_arc) / len(gaps_arc)))
        print()
    print("### Targets, checked\n")
    failed = [c for c in checks if not c[3]]
    print(f"{len(checks) - len(failed)} of {len(checks)} trace/size points have tinylfu >= max(lru, arc) - 0.5.\n")
    if failed:
        print("| trace | size | target | value |\n|---|---:|---|---:|")
        for t, s, what, _, v in failed:
            print(f"| {t} | {s} | {what} | {v} |")
        print()
    print("Mean of tinylfu - arc over each trace's sizes (target: >= +1 on average):\n")
    print("| trace | mean tinylfu - arc |\n|---|---:|")
    for t, m in means:
        print(f"| {t} | {m:+.2f} |")
    overall = sum(m for _, m in means) / len(means)
    no_loop = [m for t, m in means if not t.startswith("loop")]
    print(f"| **all traces** | **{overall:+.2f}** |")
    if no_loop:
        print(f"| all but the loop | {sum(no_loop) / len(no_loop):+.2f} |")
    print()


if __name__ == "__main__":
    main()
