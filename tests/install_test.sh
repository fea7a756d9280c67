#!/usr/bin/env bash
# Installs the built tree into a temporary prefix, then configures, builds and
# runs the projects in tests/consumer/ against it with find_package(lcache):
#   core/     an in-process cache: the core component alone; its compile and
#             link lines must name none of the wire (JSON, HTTP/2, gRPC)
#   h2/       the lean transport alone (the h2 component and those below it)
#   cluster/  lcache::Node, both transports and etcd discovery
#   origin/   the HTTP and PostgreSQL origins alone
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
for project in core h2 cluster origin; do
  cmake -S "$source_dir/tests/consumer/$project" -B "$work/$project" -G Ninja \
    -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$work/$project" >/dev/null
done

commands=$(ninja -C "$work/core" -t commands consumer)
for wire in nlohmann lcache_peer lcache_h2 lcache_grpc nghttp2 libevent grpc protobuf; do
  if grep -qi -- "$wire" <<<"$commands"; then
    echo "install_test: the core consumer's build names $wire:" >&2
    grep -i -- "$wire" <<<"$commands" >&2
    exit 1
  fi
done

"$work/core/consumer"
"$work/h2/consumer_h2"
"$work/cluster/consumer_node"
"$work/cluster/consumer_etcd"
"$work/origin/consumer_origin"
