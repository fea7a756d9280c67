#!/usr/bin/python3
"""A transparent TCP proxy that delays one direction of a link (chaos suite).

This kernel has no sch_netem, so delay is added in user space: in a node's
namespace an nftables rule redirects its new connections to a peer's port
here (netns.Topology.redirect); the proxy finds the original destination
(SO_ORIGINAL_DST), connects to it with a socket mark the rule skips, and
relays bytes both ways. While delay is on (SIGUSR1; SIGUSR2 turns it off)
each chunk read in the delayed direction is written `delay` +- `jitter` ms
after it was read, never before the chunk read ahead of it, so TCP sees
the latency and jitter of a slow link without reordering. Starts off.

    delay_proxy.py --port 17001 --delay-ms 200 --jitter-ms 50 --direction up
    (up: bytes from the connecting side; down: bytes back to it)
"""

import argparse
import asyncio
import random
import signal
import socket
import struct
import time

SO_ORIGINAL_DST = 80
PROXY_MARK = 0x2A


class State:
    def __init__(self, args):
        self.on = False
        self.delay = args.delay_ms / 1000
        self.jitter = args.jitter_ms / 1000
        self.direction = args.direction

    def latency(self):
        if not self.on:
            return 0.0
        return max(0.0, self.delay + random.uniform(-self.jitter, self.jitter))


async def relay(reader, writer, state, delayed):
    queue = asyncio.Queue()

    async def pump_out():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    out = asyncio.ensure_future(pump_out())
    last_due = 0.0
    try:
        while data := await reader.read(65536):
            due = time.monotonic() + (state.latency() if delayed else 0.0)
            last_due = max(last_due, due)
            queue.put_nowait((last_due, data))
            if out.done():
                break
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0.0, None))
    try:
        await out
    except (ConnectionError, OSError):
        pass
    writer.close()


async def serve_one(client_reader, client_writer, state):
    sock = client_writer.get_extra_info("socket")
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port = struct.unpack("!H", raw[2:4])[0]
        ip = socket.inet_ntoa(raw[4:8])
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, PROXY_MARK)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream.setblocking(False)
        await asyncio.get_running_loop().sock_connect(upstream, (ip, port))
        up_reader, up_writer = await asyncio.open_connection(sock=upstream)
    except OSError:
        client_writer.close()
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    a = relay(client_reader, up_writer, state, state.direction in ("up", "both"))
    b = relay(up_reader, client_writer, state, state.direction in ("down", "both"))
    await asyncio.gather(a, b, return_exceptions=True)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=200)
    parser.add_argument("--jitter-ms", type=float, default=50)
    parser.add_argument("--direction", choices=("up", "down", "both"), default="up")
    args = parser.parse_args()
    state = State(args)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: setattr(state, "on", True))
    loop.add_signal_handler(signal.SIGUSR2, lambda: setattr(state, "on", False))
    server = await asyncio.start_server(lambda r, w: serve_one(r, w, state), "0.0.0.0", args.port)
    print("delay proxy listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
