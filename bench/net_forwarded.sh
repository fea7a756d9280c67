#!/usr/bin/env bash
# Forwarded hits: what the extra hop costs. Three lcache-nodes on the ring;
# h2load asks node A for one key that node B owns, so every request is
# served by A (a client request) and forwarded to B (a peer request, a hit
# there). A and B run pinned to core 0, h2load to core 1; the third node
# only completes the ring. Per request: A's and B's CPU (utime+stime from
# /proc over the run, divided by the requests h2load completed), to set
# beside the one-node hit figure of bench/net_hits.sh.
#
#   bench/net_forwarded.sh                 # lean transport, 3 runs of 10 s at 32 in flight
#   NODE_ARGS="-transport grpc" bench/net_forwarded.sh
#
# The hot cache is off (-hot-cache-mb 0 on every node, unless NODE_ARGS
# sets it again): with it, A keeps the key after its first fetch and the run would
# measure a hot hit on A instead of the hop.
#
# Environment: NODE_ARGS ("-transport lean"), CONC (32), RUNS (3),
# DURATION (10), WARMUP (2), VALUE_BYTES (100), OUT (a new /tmp directory).
# Needs: build/bin/lcache-node, h2load (nghttp2-client), taskset, /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_ARGS=${NODE_ARGS:-"-transport lean"}
CONC=${CONC:-32}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
VALUE_BYTES=${VALUE_BYTES:-100}
OUT=${OUT:-$(mktemp -d /tmp/lcache-net-forwarded.XXXXXX)}
PY=/usr/bin/python3
NODE=build/bin/lcache-node
TCK=$(getconf CLK_TCK)
command -v h2load >/dev/null || { echo "missing h2load (apt-get install nghttp2-client)" >&2; exit 2; }
[[ -x $NODE ]] || { echo "missing $NODE (cmake --preset release && cmake --build --preset release)" >&2; exit 2; }
mkdir -p "$OUT"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
A=127.0.0.1:$(free_port); B=127.0.0.1:$(free_port); C=127.0.0.1:$(free_port)
PEERS=$A,$B,$C

# A key B owns on the Go ring over the three (tests/data/ring_reference.py).
KEY=$("$PY" - "$PEERS" "$B" <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("r", "tests/data/ring_reference.py")
r = importlib.util.module_from_spec(spec); spec.loader.exec_module(r)
peers, b = sys.argv[1].split(","), sys.argv[2]
ring = r.build(peers, r.REPLICAS)
print(next(k for k in (f"k{i}" for i in range(10000)) if r.owner(ring, k) == b))
EOF
)
"$PY" - "$KEY" "$OUT/body.bin" <<'EOF'
import json, struct, sys
m = json.dumps({"group": "scores", "key": sys.argv[1]}, separators=(",", ":")).encode()
open(sys.argv[2], "wb").write(b"\0" + struct.pack(">I", len(m)) + m)
EOF

pids=()
stop_nodes() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_nodes EXIT
for addr in $A $B $C; do
  # shellcheck disable=SC2086  # NODE_ARGS is word-split on purpose
  taskset -c 0 "$NODE" -addr "$addr" -peers "$PEERS" -source "synthetic:$VALUE_BYTES" -hot-cache-mb 0 $NODE_ARGS \
    >"$OUT/node-${addr##*:}.log" 2>&1 &
  pids+=($!)
done
PID_A=${pids[0]}; PID_B=${pids[1]}
for addr in $A $B $C; do
  for _ in $(seq 100); do grep -q 'serving group' "$OUT/node-${addr##*:}.log" && break; sleep 0.1; done
done

HDRS=(-H 'content-type: application/grpc+json' -H 'te: trailers')
URL="http://$A/lcache.LCache/Get"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "key $KEY (owner $B), asked of $A; $NODE_ARGS; $CONC in flight; $RUNS x ${DURATION}s"
printf 'run\tqps\tA_us_per_req\tB_us_per_req\ttotal_us_per_req\n' | tee "$OUT/summary.tsv"
for run in $(seq "$RUNS"); do
  taskset -c 1 h2load -D "$WARMUP" -c 1 -m "$CONC" "${HDRS[@]}" -d "$OUT/body.bin" "$URL" >/dev/null
  a0=$(ticks "$PID_A"); b0=$(ticks "$PID_B")
  taskset -c 1 h2load -D "$DURATION" -c 1 -m "$CONC" "${HDRS[@]}" -d "$OUT/body.bin" "$URL" \
    >"$OUT/h2load-$run.txt"
  a1=$(ticks "$PID_A"); b1=$(ticks "$PID_B")
  done_n=$(awk '/^requests:/{print $8}' "$OUT/h2load-$run.txt")
  ok_n=$(awk '/^status codes:/{print $3}' "$OUT/h2load-$run.txt")
  [[ $done_n == "$ok_n" ]] || echo "run $run: $done_n done but $ok_n 2xx" >&2
  awk -v r="$run" -v n="$done_n" -v d="$DURATION" -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v t="$TCK" \
    'BEGIN{printf "%s\t%.0f\t%.2f\t%.2f\t%.2f\n", r, n/d, a/t*1e6/n, b/t*1e6/n, (a+b)/t*1e6/n}' |
    tee -a "$OUT/summary.tsv"
done
# B must have served every request as a hit: one getter load in all.
loads=$(grep -c '\[getter\] load' "$OUT"/node-*.log | awk -F: '{s += $2} END {print s}')
echo "getter loads on all nodes: $loads (1 expected); raw output in $OUT"
