# Sourced (not run) by the one-node network benchmarks, net_hits.sh and
# net_bench_client.sh, from the repository's root: starts $NODE on a free
# loopback port, pinned to core $SERVER_CPU, with -source
# synthetic:$VALUE_BYTES and $NODE_ARGS, logging to $OUT/node.log; stops it
# on exit; returns once it serves. Sets PORT and NODE_PID.

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086  # NODE_ARGS: extra node flags, word-split on purpose
taskset -c "$SERVER_CPU" "$NODE" -addr "127.0.0.1:$PORT" -source "synthetic:$VALUE_BYTES" $NODE_ARGS \
  >"$OUT/node.log" 2>&1 &
NODE_PID=$!
stop_node() { kill -TERM "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null || true; }
trap stop_node EXIT
for _ in $(seq 100); do
  grep -q 'serving group' "$OUT/node.log" && break
  sleep 0.1
done
