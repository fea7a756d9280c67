#!/usr/bin/env bash
# The first network figure: hit QPS and server CPU per hit of ONE lcache-node,
# measured with h2load (nghttp2-client) sending gRPC-JSON Gets for one cached key.
#
#   bench/net_hits.sh            # 5 runs at 32 streams in flight, 5 runs at 1
#
# The node runs pinned to core 0 (-source synthetic:100, so 100-byte values),
# h2load to core 1, one connection, one key (so every measured request is a
# hit). Each run: wait until the machine is quiet (1-minute load average below
# LOAD_MAX and under OTHERS_MAX % of a core busy over 2 s; at most LOAD_WAIT s),
# a WARMUP-second h2load run (not measured), then the measured DURATION-second
# h2load run; the node's utime+stime (/proc/PID/stat) is read just before and
# just after it. CPU per hit = that delta / requests h2load completed. h2load's
# own CPU per request comes from bash's `time`. Two noise indicators, in % of
# one core over the run: "others", the CPU the rest of the machine used
# (/proc/stat busy time minus the node's and h2load's), and "steal", the time
# the hypervisor gave our vCPUs to other guests. A run with others >=
# OTHERS_MAX (or any failed, errored or non-2xx request) is discarded and
# repeated, up to 3*RUNS tries per concurrency. Latency percentiles come from
# h2load's --log-file (per-request times), written only at the concurrencies
# in LOG_CONCS, so that at 32 in flight the generator does no extra work.
#
# TLS=1: the node serves TLS (a test CA and certificate made with openssl in
# $OUT), h2load and curl speak https; h2load keeps its one connection, so
# the figure is the cost per hit of TLS records, not of handshakes.
#
# Environment: TLS (0), NODE_ARGS (extra lcache-node flags, e.g. "-transport lean"),
# CONCS ("32 1"), LOG_CONCS ("1"), RUNS (5), DURATION (10),
# WARMUP (2), KEY (k1), VALUE_BYTES (100), SERVER_CPU (0), CLIENT_CPU (1),
# LOAD_MAX (0.6), OTHERS_MAX (5), LOAD_WAIT (180), OUT (default: a new /tmp
# directory; node log, raw h2load output, summary.tsv).
# Needs: build/bin/lcache-node (release preset), h2load (Debian's
# nghttp2-client), curl, taskset, /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."

CONCS=${CONCS:-"32 1"}
LOG_CONCS=${LOG_CONCS:-"1"}
RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
KEY=${KEY:-k1}
NODE_ARGS=${NODE_ARGS:-}
VALUE_BYTES=${VALUE_BYTES:-100}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
LOAD_MAX=${LOAD_MAX:-0.6}
OTHERS_MAX=${OTHERS_MAX:-5}
LOAD_WAIT=${LOAD_WAIT:-180}
OUT=${OUT:-$(mktemp -d /tmp/lcache-net-hits.XXXXXX)}
PY=/usr/bin/python3
NODE=build/bin/lcache-node

for tool in h2load curl taskset "$PY"; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y --no-install-recommends nghttp2-client curl)" >&2; exit 2; }
done
[[ -x $NODE ]] || { echo "missing $NODE: cmake --preset release && cmake --build --preset release" >&2; exit 2; }
mkdir -p "$OUT"
TCK=$(getconf CLK_TCK)

# The request: gRPC message = 1 byte flag (0) + 4-byte big-endian length + JSON.
"$PY" - "$KEY" "$OUT/body.bin" <<'EOF'
import json, struct, sys
m = json.dumps({"group": "scores", "key": sys.argv[1]}, separators=(",", ":")).encode()
open(sys.argv[2], "wb").write(b"\0" + struct.pack(">I", len(m)) + m)
EOF

SCHEME=http
CURL_PROTO=(--http2-prior-knowledge)
if [[ ${TLS:-0} == 1 ]]; then
  (cd "$OUT" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
      -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout node.key \
      -out node.csr -subj /CN=node 2>/dev/null &&
    echo "subjectAltName=IP:127.0.0.1" >node.ext &&
    openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem \
      -days 2 -extfile node.ext 2>/dev/null)
  NODE_ARGS="$NODE_ARGS -tls-cert $OUT/node.pem -tls-key $OUT/node.key"
  SCHEME=https
  CURL_PROTO=(--http2 --cacert "$OUT/ca.pem")
fi

# shellcheck source=bench/one_node.sh
source bench/one_node.sh
URL=$SCHEME://127.0.0.1:$PORT/lcache.LCache/Get
HDRS=(-H 'content-type: application/grpc+json' -H 'te: trailers')

# One response by hand: HTTP 200, grpc-status 0, the value the synthetic source
# computes (re-implemented here from tools/node_source.cc), no err.
curl -s "${CURL_PROTO[@]}" "${HDRS[@]}" --data-binary @"$OUT/body.bin" \
  -D "$OUT/curl.headers" -o "$OUT/curl.body" "$URL"
"$PY" - "$KEY" "$VALUE_BYTES" "$OUT/curl.headers" "$OUT/curl.body" <<'EOF'
import base64, json, struct, sys, zlib
key, n, hdr, body = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read(), open(sys.argv[4], "rb").read()
x, want = zlib.crc32(key.encode()) | 1, bytearray()
for _ in range(n):
    x ^= (x << 13) & 0xFFFFFFFF; x ^= x >> 17; x ^= (x << 5) & 0xFFFFFFFF
    want.append(ord("a") + x % 26)
assert hdr.startswith("HTTP/2 200"), hdr
assert "grpc-status: 0" in hdr, hdr
flag, ln = body[0], struct.unpack(">I", body[1:5])[0]
msg = json.loads(body[5:5 + ln])
assert flag == 0 and len(body) == 5 + ln, body
assert "err" not in msg and base64.b64decode(msg["value"]) == bytes(want), msg
print(f"check: HTTP 200, grpc-status 0, {n}-byte value as expected ({5 + ln} response bytes)")
EOF

ticks() { awk '{print $14 + $15}' "/proc/$NODE_PID/stat"; }
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }  # user nice system irq softirq
steal() { awk '/^cpu /{print $9}' /proc/stat; }  # time the hypervisor gave our vCPUs to others

# Quiet = 1-minute load average below LOAD_MAX and, over the last 2 s, the
# machine busy for less than OTHERS_MAX % of one core (the node is idle then).
wait_quiet() {
  local waited=0 b0 b1
  while :; do
    b0=$(busy); sleep 2; b1=$(busy)
    if awk -v m="$LOAD_MAX" '{exit !($1 < m)}' /proc/loadavg &&
       ((100 * (b1 - b0) / TCK / 2 < OTHERS_MAX)); then return; fi
    if ((waited >= LOAD_WAIT)); then
      echo "  (not quiet after ${LOAD_WAIT}s: load $(cut -d' ' -f1 /proc/loadavg); running anyway)"; return
    fi
    sleep 3; waited=$((waited + 5))
  done
}

summary="$OUT/summary.tsv"
printf 'conc\ttry\tkept\tload\tqps\tcpu_us_per_hit\tnode_cpu_pct\th2load_us_per_req\tothers_pct\tsteal_pct\tdone\tfailed\terrored\tnon2xx\tmin\tmax\tmean\tsd\tp50_us\tp90_us\tp99_us\tp999_us\n' >"$summary"

for conc in $CONCS; do
  kept=0
  for try in $(seq $((3 * RUNS))); do
    ((kept < RUNS)) || break
    wait_quiet
    load=$(cut -d' ' -f1 /proc/loadavg)
    name=m$conc-$try
    taskset -c "$CLIENT_CPU" h2load -D "$WARMUP" -c 1 -m "$conc" "${HDRS[@]}" -d "$OUT/body.bin" "$URL" \
      >"$OUT/warmup-$name.txt"
    logopt=(); rm -f "$OUT/req-$name.log"
    [[ " $LOG_CONCS " == *" $conc "* ]] && logopt=(--log-file="$OUT/req-$name.log")
    t0=$(ticks); b0=$(busy); s0=$(steal)
    TIMEFORMAT='%U %S'
    { time taskset -c "$CLIENT_CPU" h2load -D "$DURATION" -c 1 -m "$conc" "${HDRS[@]}" \
        -d "$OUT/body.bin" "${logopt[@]}" "$URL" >"$OUT/h2load-$name.txt" ; } 2>"$OUT/time-$name.txt"
    t1=$(ticks); b1=$(busy); s1=$(steal)
    line=$("$PY" - "$conc" "$try" "$load" "$OUT/h2load-$name.txt" "$OUT/req-$name.log" \
      "$OUT/time-$name.txt" "$((t1 - t0))" "$((b1 - b0))" "$((s1 - s0))" "$TCK" "$DURATION" \
      "$OTHERS_MAX" <<'PYEOF'
import re, sys
conc, run, load, out, log, tfile = sys.argv[1:7]
dt, db, ds, tck = (int(v) for v in sys.argv[7:11])
dur, others_max = float(sys.argv[11]), float(sys.argv[12])
s = open(out).read()
qps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", s).group(1))
req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", s)
done, failed, errored = int(req.group(3)), int(req.group(5)), int(req.group(6))
non2xx = done - int(re.search(r"status codes: (\d+) 2xx", s).group(1))
lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", s).groups()
try:
    times = sorted(int(l.split("\t")[2]) for l in open(log) if l.strip())
    pct = lambda p: times[min(len(times) - 1, int(p * len(times)))]
except FileNotFoundError:
    pct = lambda p: "-"
u, sy = (float(v) for v in open(tfile).read().split())
node_s = dt / tck
others = 100 * max(0.0, db / tck - node_s - (u + sy)) / dur
kept = int(others < others_max and failed == 0 and errored == 0 and non2xx == 0)
print("\t".join(str(v) for v in (
    conc, run, kept, load, f"{qps:.0f}", f"{node_s / done * 1e6:.2f}", f"{100 * node_s / dur:.0f}",
    f"{(u + sy) / done * 1e6:.2f}", f"{others:.0f}", f"{100 * ds / tck / dur:.1f}",
    done, failed, errored, non2xx, *lat, pct(0.5), pct(0.9), pct(0.99), pct(0.999))))
PYEOF
)
    echo "$line" >>"$summary"
    echo "$line" | awk -F'\t' '{printf "m=%s try %s %s (load %s): %s hits/s, %s us CPU/hit (node %s%% of a core), h2load %s us/req, others %s%%, steal %s%%; done %s failed %s errored %s non-2xx %s; latency min %s max %s mean %s sd %s; p50/p90/p99/p99.9 %s/%s/%s/%s us\n", $1,$2,($3?"kept":"DISCARDED"),$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22}'
    kept=$((kept + $(cut -f3 <<<"$line")))
  done
  ((kept >= RUNS)) || echo "only $kept clean runs at $conc in flight"
done

loads=$(grep -c "\[getter\] load key=$KEY\$" "$OUT/node.log" || true)
echo "node log: $loads '[getter] load key=$KEY' line(s) (expect 1)"
stop_node; trap - EXIT
rc=0; wait "$NODE_PID" 2>/dev/null || rc=$?
echo "node exit status after SIGTERM: $rc"

"$PY" - "$summary" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
for conc in dict.fromkeys(r["conc"] for r in rows):
    rs = [r for r in rows if r["conc"] == conc and r["kept"] == "1"]
    print(f"-- {len(rs)} kept runs at {conc} in flight: median (each run)")
    for col in ("qps", "cpu_us_per_hit", "node_cpu_pct", "h2load_us_per_req", "mean", "sd", "max",
                "p50_us", "p90_us", "p99_us", "others_pct", "steal_pct"):
        vals = [r[col] for r in rs]
        if "-" in vals: continue
        num = lambda v: float(v.rstrip("usm").rstrip("u")) * (1000 if v.endswith("ms") else 1)
        med = statistics.median(num(v) for v in vals)
        print(f"   {col:18} {med:10.2f}   ({' / '.join(vals)})")
EOF
echo "raw output in $OUT"
