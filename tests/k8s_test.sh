#!/usr/bin/env bash
# k8s/: every manifest is valid against the Kubernetes schemas (offline, with
# the pinned npm packages of tests/k8s/package-lock.json, installed into the
# build directory), and lcache-node accepts the container args of
# k8s/cache.yaml ($(POD_IP) = 127.0.0.1) as flags (absl's -only-check-args).
#
# The args are also run for real, against a test etcd, in tests/etcd_test.py
# (K8sArgsTest).
#
#   tests/k8s_test.sh SOURCE_DIR BIN_DIR WORK_DIR
set -euo pipefail
src=$1 bin=$2 work=$3

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "k8s_test: $tool not found (the machine's Node.js)"; exit 1; }
done
mkdir -p "$work"
cp "$src/tests/k8s/package.json" "$src/tests/k8s/package-lock.json" "$src/tests/k8s/validate.mjs" "$work/"
if ! cmp -s "$work/package-lock.json" "$work/node_modules/.package-lock.json.installed" 2>/dev/null; then
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$work/package-lock.json" "$work/node_modules/.package-lock.json.installed"
fi

echo "== schemas"
node "$work/validate.mjs" --args-out "$work/cache-args.json" "$src"/k8s/*.yaml

echo "== k8s/cache.yaml args accepted by lcache-node"
mapfile -t args < <(/usr/bin/python3 -c '
import json, re, sys
for a in json.load(open(sys.argv[1])):
    a = a.replace("$(POD_IP)", "127.0.0.1")
    if re.search(r"\$\(\w+\)", a):
        sys.exit(f"k8s_test: unknown variable in arg {a!r}")
    print(a)' "$work/cache-args.json")
known=$("$bin/lcache-node" -helpfull 2>&1 || true)
check=()
for a in "${args[@]}"; do
  name=${a#-}; name=${name#-}; name=${name%%=*}; name=${name//-/_}
  if grep -q -- "--$name " <<<"$known" || grep -q -- "--$name\$" <<<"$known"; then
    check+=("$a")
  else
    echo "FAIL $a: lcache-node has no such flag"; exit 1
  fi
done
"$bin/lcache-node" "${check[@]}" -only-check-args
echo "ok   ${#check[@]} args parse: ${check[*]}"
