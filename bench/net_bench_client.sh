#!/usr/bin/env bash
# lcache-bench's own cost: its CPU per call against ONE lean lcache-node, beside
# the node's CPU per hit, in bench/net_hits.sh's set-up (node pinned to core 0,
# -source synthetic:100, so 100-byte values; generator pinned to core 1; one
# connection; one key, so every measured call is a hit).
#
#   bench/net_bench_client.sh                                    # build/bin/lcache-bench
#   BENCHES="/tmp/lcache-bench.old build/bin/lcache-bench" bench/net_bench_client.sh
#
# With several generator binaries in BENCHES, the runs interleave (run 1 of
# each, then run 2 of each, ...) so that a before/after comparison sees the
# same noise on a shared machine. Each run: a WARMUP-second lcache-bench run
# (not measured), then the measured one, -duration-s DURATION -warmup-s 0.
# The generator reports its own CPU per call (getrusage over its measured
# window); the node's utime+stime (/proc/PID/stat) is read just before and
# after the generator process, and divided by the calls it made. Both are
# also given as their kernel part alone (stime). "others" is
# the CPU the rest of the machine used over the run (/proc/stat busy time
# minus node and generator), in % of one core: a run with others >=
# OTHERS_MAX is marked NOISY, not discarded.
#
# Environment: BENCHES (build/bin/lcache-bench), RUNS (3), DURATION (8),
# WARMUP (2), CONC (32), VALUE_BYTES (100), NODE_ARGS ("-transport lean"),
# SERVER_CPU (0), CLIENT_CPU (1), OTHERS_MAX (5), OUT (a new /tmp directory).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCHES=${BENCHES:-build/bin/lcache-bench}
RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
CONC=${CONC:-32}
VALUE_BYTES=${VALUE_BYTES:-100}
NODE_ARGS=${NODE_ARGS:-"-transport lean"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OTHERS_MAX=${OTHERS_MAX:-5}
OUT=${OUT:-$(mktemp -d /tmp/lcache-net-bench-client.XXXXXX)}
PY=/usr/bin/python3
NODE=build/bin/lcache-node

for b in $BENCHES "$NODE"; do
  [[ -x $b ]] || { echo "missing $b: cmake --preset release && cmake --build --preset release" >&2; exit 2; }
done
mkdir -p "$OUT"
TCK=$(getconf CLK_TCK)

# shellcheck source=bench/one_node.sh
source bench/one_node.sh

ticks() { awk '{print $14 + $15}' "/proc/$NODE_PID/stat"; }
sticks() { awk '{print $15}' "/proc/$NODE_PID/stat"; }  # kernel only
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }  # user nice system irq softirq

summary="$OUT/summary.tsv"
printf 'bench\trun\tqps\tclient_us_per_call\tclient_kernel_us\tnode_us_per_hit\tnode_kernel_us\tothers_pct\tp50_us\tp99_us\terrors\n' >"$summary"
for run in $(seq "$RUNS"); do
  for b in $BENCHES; do
    taskset -c "$CLIENT_CPU" "$b" -json -targets "127.0.0.1:$PORT" -concurrency "$CONC" -keys 1 \
      -duration-s "$WARMUP" -warmup-s 0 >/dev/null || true
    t0=$(ticks); s0=$(sticks); b0=$(busy)
    taskset -c "$CLIENT_CPU" "$b" -json -targets "127.0.0.1:$PORT" -concurrency "$CONC" -keys 1 \
      -duration-s "$DURATION" -warmup-s 0 >"$OUT/run.json" || true
    t1=$(ticks); s1=$(sticks); b1=$(busy)
    line=$("$PY" - "$b" "$run" "$OUT/run.json" "$((t1 - t0))" "$((b1 - b0))" "$TCK" "$((s1 - s0))" <<'EOF'
import json, sys
b, run, f = sys.argv[1:4]
dt, db, tck, ds = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
o = json.load(open(f))
calls = o["ok"] + o["errors"]
client_s = o["client_cpu_us_per_call"] * calls / 1e6
others = 100 * max(0.0, (db - dt) / tck - client_s) / o["seconds"]
print("\t".join(str(v) for v in (
    b, run, f'{o["qps"]:.0f}', f'{o["client_cpu_us_per_call"]:.2f}',
    f'{o.get("client_system_us_per_call", float("nan")):.2f}', f"{dt / tck / calls * 1e6:.2f}",
    f"{ds / tck / calls * 1e6:.2f}",
    f"{others:.0f}", f'{o["latency_us"]["p50"]:.0f}', f'{o["latency_us"]["p99"]:.0f}', o["errors"])))
EOF
)
    echo "$line" >>"$summary"
    echo "$line" | awk -F'\t' -v m="$OTHERS_MAX" '{printf "%s run %s: %s calls/s, client %s us/call (kernel %s), node %s us/hit (kernel %s), others %s%%%s, p50 %s p99 %s us, errors %s\n", $1,$2,$3,$4,$5,$6,$7,$8,($8>=m?" (NOISY)":""),$9,$10,$11}'
  done
done

stop_node; trap - EXIT

"$PY" - "$summary" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
for b in dict.fromkeys(r["bench"] for r in rows):
    rs = [r for r in rows if r["bench"] == b]
    print(f"-- {b}: {len(rs)} runs, median (min-max)")
    for col in ("qps", "client_us_per_call", "client_kernel_us", "node_us_per_hit",
                "node_kernel_us", "p50_us", "p99_us", "others_pct"):
        vals = [float(r[col]) for r in rs]
        print(f"   {col:20} {statistics.median(vals):10.2f}   ({min(vals):g}-{max(vals):g})")
EOF
echo "raw output in $OUT"
