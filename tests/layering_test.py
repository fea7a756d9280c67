#!/usr/bin/python3
"""The layers of docs/ARCHITECTURE.md, checked on every #include "..." line.

Each folder of src/ and each public header belongs to a layer; a file may
include headers of its own layer and of the layers below it, never above.
Programs (tools/) and benchmarks (bench/) include public headers only, and
nothing includes a program's header from outside its folder. No include
cycle among the project's headers.

    tests/layering_test.py [SOURCE_DIR]
"""
import pathlib
import re
import sys

# Layers, bottom first: a layer may use itself and everything it names.
USES = {
    "core": set(),  # lcache: src/core, src/store, src/ring
    "peer": {"core"},
    "h2": {"peer", "core"},
    "grpc": {"peer", "core"},
    "etcd": set(),
    "origin": {"core"},
    "node": {"h2", "grpc", "peer", "etcd", "core"},
}

PUBLIC = {
    "byte_view.h": "core", "clock.h": "core", "group.h": "core", "hash_ring.h": "core",
    "latency_histogram.h": "core", "outlier_ejection.h": "core", "peers.h": "core",
    "ring_picker.h": "core", "singleflight.h": "core", "store.h": "core",
    "peer_server.h": "peer", "json_codec.h": "peer", "grpc_wire.h": "peer",
    "h2_peer.h": "h2", "grpc_peer.h": "grpc", "etcd_discovery.h": "etcd", "node.h": "node",
    "origin.h": "core", "log_key.h": "core", "http_origin.h": "origin", "postgres_origin.h": "origin",
}

# Quoted includes, and <lcache/...> as a user would write them.
INCLUDE = re.compile(r'^\s*#\s*include\s+(?:"([^"]+)"|<(lcache/[^>]+)>)', re.M)


def layer_of_source(rel):
    """The layer of a file under src/, from its folder."""
    parts = rel.parts
    if len(parts) < 3:
        return None  # directly in src/: no layer (reported by the caller)
    if parts[1] in ("core", "store", "ring"):
        return "core"
    if parts[1] == "peer":
        return parts[2] if len(parts) > 3 and parts[2] in ("h2", "grpc") else "peer"
    return parts[1]  # etcd, origin, node


def layer_of_include(name):
    """The layer an include names, or None for a header outside the project's layers."""
    if name.startswith("lcache/"):
        return PUBLIC.get(name[len("lcache/"):], "unknown public header")
    first = name.split("/")[0]
    if first in ("core", "store", "ring"):
        return "core"
    if first == "peer":
        second = name.split("/")[1]
        return second if second in ("h2", "grpc") else "peer"
    if first in ("etcd", "origin", "node") and not name.startswith("etcd/etcdserverpb") \
            and not name.startswith("etcd/mvccpb"):
        return first
    return None


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                        pathlib.Path(__file__).resolve().parent.parent)
    errors = []
    graph = {}

    def check(path, layer, private_ok):
        text = path.read_text()
        rel = path.relative_to(root)
        graph[str(rel)] = []
        for quoted, angled in INCLUDE.findall(text):
            name = quoted or angled
            target = layer_of_include(name)
            if name.startswith("lcache/"):
                graph[str(rel)].append("include/" + name)
            elif target is not None:
                graph[str(rel)].append("src/" + name)
            if target == "unknown public header":
                errors.append(f"{rel}: includes {name}, which no layer owns (add it to PUBLIC)")
            elif target is not None and not name.startswith("lcache/") and not private_ok:
                errors.append(f"{rel}: includes the private header {name}")
            elif target is not None and layer in USES and target != layer \
                    and target not in USES[layer]:
                errors.append(f"{rel} ({layer}) includes {name} ({target}): a higher layer")
            if re.match(r"(tools|bench)/", name) or name in ("go_flags.h", "node_source.h"):
                if not str(rel).startswith("tools/"):
                    errors.append(f"{rel}: includes the program header {name}")

    for path in sorted((root / "src").rglob("*")):
        if path.suffix in (".h", ".cc"):
            layer = layer_of_source(path.relative_to(root))
            if layer not in USES:
                errors.append(f"{path.relative_to(root)}: in no layer's folder (add it to USES)")
            check(path, layer, private_ok=True)
    for path in sorted((root / "include" / "lcache").glob("*.h")):
        layer = PUBLIC.get(path.name)
        if layer is None:
            errors.append(f"include/lcache/{path.name}: a public header no layer owns")
        check(path, layer, private_ok=False)
    for folder in ("tools", "bench"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in (".h", ".cc"):
                check(path, None, private_ok=False)

    # Include cycles among the project's headers (depth-first search).
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, []):
            if state.get(nxt) == "open":
                errors.append("include cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in list(graph):
        if node not in state:
            visit(node, [node])

    for e in errors:
        print(e)
    print(f"layering_test: {len(graph)} files, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
