#!/usr/bin/env bash
# The .deb packages (cmake/Packaging.cmake), built from the build directory
# with cpack, checked, installed on this machine, run, and removed again:
#   lcache-node  files, Depends (dpkg-shlibdeps), the conffile, the hardened
#                unit; then the unit's own command line (ExecStart with the
#                installed /etc/default/lcache-node, ports moved to free ones)
#                run as `nobody` without new privileges, as DynamicUser would,
#                or the unit itself where systemd runs; a value through it
#   lcache-dev   a project built against /usr with find_package(lcache)
# Installing needs root (CI runs as root); otherwise the packages are only
# built, checked and run from an extracted tree.
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
chmod 755 "$work"
node_pid=""
installed=0
cleanup() {
  if [[ -n "$node_pid" ]]; then kill "$node_pid" 2>/dev/null || true; fi
  if ((installed)); then dpkg --purge lcache-node lcache-dev >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "package_test: $*" >&2; exit 1; }

(cd "$build_dir" && cpack -G DEB -B "$work/debs" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log" >&2; fail "cpack failed"; }
node_deb=$(ls "$work"/debs/lcache-node_*.deb)
dev_deb=$(ls "$work"/debs/lcache-dev_*.deb)

# -- contents and control ------------------------------------------------
contents=$(dpkg-deb -c "$node_deb" | awk '{print $6}')
for f in ./usr/bin/lcache-node ./usr/bin/lcache-cli ./usr/bin/lcache-bench \
         ./lib/systemd/system/lcache-node.service ./etc/default/lcache-node; do
  grep -qx -- "$f" <<<"$contents" || fail "lcache-node lacks $f"
done
dev_contents=$(dpkg-deb -c "$dev_deb" | awk '{print $6}')
for f in ./usr/include/lcache/group.h ./usr/include/lcache/http_origin.h \
         ./usr/lib/liblcache.a ./usr/lib/liblcache_origin.a ./usr/lib/cmake/lcache/lcacheConfig.cmake; do
  grep -qx -- "$f" <<<"$dev_contents" || fail "lcache-dev lacks $f"
done
depends=$(dpkg-deb -f "$node_deb" Depends)
for lib in libcurl4 libpq5 libgrpc++ libnghttp2 libabsl; do
  grep -q "$lib" <<<"$depends" || fail "lcache-node does not depend on $lib: $depends"
done
dpkg-deb -e "$node_deb" "$work/control"
grep -qx /etc/default/lcache-node "$work/control/conffiles" || fail "no conffile"
dpkg-deb -x "$node_deb" "$work/root"
unit="$work/root/lib/systemd/system/lcache-node.service"
for line in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
            PrivateTmp=yes CapabilityBoundingSet= "EnvironmentFile=/etc/default/lcache-node"; do
  grep -qx -- "$line" "$unit" || fail "the unit lacks $line"
done

# -- install --------------------------------------------------------------
root=""
if [[ $(id -u) -eq 0 ]]; then
  if dpkg-query -W -f='${Status}' lcache-node 2>/dev/null | grep -q "ok installed"; then
    fail "lcache-node is installed on this machine already; not touching it"
  fi
  installed=1
  dpkg -i "$node_deb" "$dev_deb" >"$work/dpkg.log" 2>&1 ||
    { cat "$work/dpkg.log" >&2; fail "dpkg -i failed"; }
else
  echo "package_test: not root: running the extracted package instead of installing it"
  root="$work/root"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
http_port=$(free_port)

if ((installed)) && [[ -d /run/systemd/system ]]; then
  systemd-analyze verify /lib/systemd/system/lcache-node.service || fail "systemd-analyze verify"
  # systemd runs here: the unit itself, on free ports through a runtime drop-in.
  mkdir -p /run/systemd/system/lcache-node.service.d
  printf '[Service]\nEnvironment="LCACHE_ARGS=-addr 127.0.0.1:%s -http 127.0.0.1:%s -source demo"\n' \
    "$port" "$http_port" >/run/systemd/system/lcache-node.service.d/test.conf
  trap 'systemctl stop lcache-node || true; rm -rf /run/systemd/system/lcache-node.service.d; systemctl daemon-reload || true; cleanup' EXIT
  systemctl daemon-reload
  systemctl start lcache-node
else
  # The unit's command line, as systemd would build it: ExecStart with
  # $LCACHE_ARGS from the installed defaults file, split at whitespace.
  exec_start=$(sed -n 's/^ExecStart=//p' "$root/lib/systemd/system/lcache-node.service")
  [[ "$exec_start" == '/usr/bin/lcache-node $LCACHE_ARGS' ]] || fail "ExecStart is $exec_start"
  # shellcheck disable=SC1091
  LCACHE_ARGS=$(. "$root/etc/default/lcache-node" && echo "$LCACHE_ARGS")
  [[ "$LCACHE_ARGS" == *"-addr 127.0.0.1:9000"* ]] || fail "unexpected defaults: $LCACHE_ARGS"
  args=${LCACHE_ARGS//127.0.0.1:9000/127.0.0.1:$port}
  args=${args//127.0.0.1:9080/127.0.0.1:$http_port}
  run=()
  if [[ $(id -u) -eq 0 ]]; then run=(setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs); fi
  # shellcheck disable=SC2086  # split like systemd's $VAR
  "${run[@]}" "$root/usr/bin/lcache-node" $args >"$work/node.log" 2>&1 &
  node_pid=$!
fi

ready=0
for _ in $(seq 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$http_port/readyz', timeout=1)" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
((ready)) || { cat "$work/node.log" >&2 2>/dev/null; fail "the node never became ready"; }
value=$("$root/usr/bin/lcache-cli" get -addr "127.0.0.1:$port" -key Tom) ||
  { cat "$work/node.log" >&2 2>/dev/null; fail "lcache-cli get failed"; }
[[ "$value" == "630" ]] || fail "Tom = $value"
if [[ -n "$node_pid" ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    user=$(ps -o user= -p "$node_pid")
    [[ "$user" == "nobody" ]] || fail "the node runs as $user"
  fi
  kill -TERM "$node_pid"
  wait "$node_pid" || fail "the node exited $? after SIGTERM"
  node_pid=""
fi

# -- the -dev package: a project against /usr -------------------------------
if ((installed)); then
  cmake -S "$source_dir/tests/consumer/origin" -B "$work/consumer" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release >"$work/consumer.log" 2>&1 &&
    cmake --build "$work/consumer" >>"$work/consumer.log" 2>&1 ||
    { cat "$work/consumer.log" >&2; fail "building against lcache-dev failed"; }
  "$work/consumer/consumer_origin" >/dev/null || fail "the lcache-dev consumer failed"
  dpkg --purge lcache-node lcache-dev >/dev/null
  installed=0
  [[ ! -e /usr/bin/lcache-node && ! -e /etc/default/lcache-node ]] || fail "purge left files"
fi
echo "package_test: ok (lcache-node $(dpkg-deb -f "$node_deb" Version))"
