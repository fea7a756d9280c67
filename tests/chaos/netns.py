"""The chaos suite's network: one namespace per process, a bridge between them.

    bridge ns (br0) ── veth ── node ns n1 (10.213.0.11)
                    ── veth ── node ns n2 (10.213.0.12) ...
                    ── veth ── etcd ns    (10.213.0.2)
                    ── veth ── client ns  (10.213.0.100): the suite itself

Every name starts with "lcc<pid>-", so that two runs never share one and a
run can tell a dead run's leftovers (its pid is gone) from a live one's.
Faults are nftables rules in a node's own namespace (table inet chaos):
drops by address (partitions), `numgen random` drops (loss), and a NAT
redirect of one peer link through a delaying proxy (delay_proxy.py): this
kernel has no sch_netem, so `tc netem` cannot be used.

Teardown deletes every namespace (which deletes their veths and whatever
runs in them loses its network); Topology.close is called from a finally
block and from atexit, and is idempotent.
"""

import atexit
import ctypes
import os
import re
import subprocess

SUBNET = "10.213.0"
ETCD_IP = f"{SUBNET}.2"
CLIENT_IP = f"{SUBNET}.100"
PROXY_MARK = 0x2A  # the delaying proxy's own connections are not redirected
CLONE_NEWNET = 0x40000000


def node_ip(i):
    return f"{SUBNET}.{11 + i}"


def run(*cmd, check=True):
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def sweep_stale():
    """Deletes the namespaces of earlier runs whose process is gone."""
    listed = run("ip", "netns", "list", check=False).stdout
    for name in re.findall(r"^(lcc(\d+)-\S+)", listed, re.MULTILINE):
        full, pid = name
        if not os.path.exists(f"/proc/{pid}"):
            run("ip", "netns", "del", full, check=False)


class Topology:
    """Namespaces `names` (each gets one address) joined by a bridge."""

    def __init__(self, members):
        """members: {role: ip}; a namespace lcc<pid>-<role> each."""
        sweep_stale()
        self.prefix = f"lcc{os.getpid()}-"
        self.members = dict(members)
        self.created = []
        self.closed = False
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def ns(self, role):
        return self.prefix + role

    def _add_ns(self, name):
        run("ip", "netns", "add", name)
        self.created.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")

    def _build(self):
        bridge = self.ns("br")
        self._add_ns(bridge)
        run("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", bridge, "link", "set", "br0", "up")
        for n, (role, ip) in enumerate(self.members.items()):
            name = self.ns(role)
            self._add_ns(name)
            # Made in the bridge's namespace, so that no interface of the
            # run ever exists in the host's: the inner end moves to `name`.
            outer, inner = f"v{n}", f"v{n}i"
            run("ip", "-n", bridge, "link", "add", outer, "type", "veth", "peer", "name", inner)
            run("ip", "-n", bridge, "link", "set", inner, "netns", name)
            run("ip", "-n", bridge, "link", "set", outer, "master", "br0", "up")
            run("ip", "-n", name, "link", "set", inner, "name", "eth0")
            run("ip", "-n", name, "addr", "add", f"{ip}/24", "dev", "eth0")
            run("ip", "-n", name, "link", "set", "eth0", "up")
            self.nft(role, "add table inet chaos")
            self.nft(role, "add chain inet chaos input "
                           "{ type filter hook input priority 0; policy accept; }")
            self.nft(role, "add chain inet chaos output "
                           "{ type filter hook output priority 0; policy accept; }")
            self.nft(role, "add chain inet chaos divert "
                           "{ type nat hook output priority -100; policy accept; }")

    def exec_prefix(self, role):
        """Prepend to a command to run it in `role`'s namespace."""
        return ["ip", "netns", "exec", self.ns(role)]

    def nft(self, role, rule):
        run(*self.exec_prefix(role), "nft", rule)

    def flush_faults(self, role):
        for chain in ("input", "output", "divert"):
            self.nft(role, f"flush chain inet chaos {chain}")

    # -- faults: rules in one namespace ------------------------------------

    def drop_between(self, role, ips, direction="both"):
        """Drops `role`'s packets to `ips` ("out"), from them ("in"), or both."""
        addrs = "{ " + ", ".join(ips) + " }"
        if direction in ("both", "in"):
            self.nft(role, f"add rule inet chaos input ip saddr {addrs} drop")
        if direction in ("both", "out"):
            self.nft(role, f"add rule inet chaos output ip daddr {addrs} drop")

    def lose(self, role, percent):
        """Drops `percent`% of `role`'s packets on its link at random, both ways."""
        self.nft(role, f'add rule inet chaos input iifname "eth0" '
                       f"numgen random mod 100 < {percent} drop")
        self.nft(role, f'add rule inet chaos output oifname "eth0" '
                       f"numgen random mod 100 < {percent} drop")

    def redirect(self, role, ip, port, to_port):
        """New TCP connections of `role` to ip:port go to its local `to_port`
        (the delaying proxy), but for the proxy's own (marked) ones."""
        self.nft(role, f"add rule inet chaos divert ip daddr {ip} tcp dport {port} "
                       f"meta mark != {PROXY_MARK} redirect to :{to_port}")

    def close(self):
        if self.closed:
            return
        self.closed = True
        for name in reversed(self.created):
            run("ip", "netns", "del", name, check=False)


def enter(topology, role):
    """Moves this process into `role`'s namespace. Call it before any thread
    that uses the network starts: setns moves only the calling thread, and
    threads started later inherit it."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{topology.ns(role)}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)
