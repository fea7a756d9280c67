#!/usr/bin/python3
"""A real HTTP origin for the tests: Python's http.server (HTTP/1.1,
keep-alive, a thread per connection), on 127.0.0.1 and a port the kernel
picks. It counts every request by path and every connection, so a test can
assert what reached the origin.

GET /items/<key> answers by the key's first word (up to the first '-'):
  missing  404          gone     410          broken   500
  busy     503          moved    301          slow     200 after 3 s
  lazy     200 after 0.3 s
  huge     200, 2 MiB   nostore  200, Cache-Control: no-store
  stream   200, 2 MiB chunked (no Content-Length)
  maxage   200, Cache-Control: max-age=60, Age: 10
  expires  200, Date now, Expires in 30 s
  anything else: 200, "v:" + the key (the path segment, percent-decoded)
GET /stats          {"requests": {path: n}, "connections": n}

Run alone: python3 tests/http_origin_server.py  (prints "port N")."""

import email.utils
import http.server
import json
import socket
import ssl
import threading
import time
import urllib.parse


class Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls=None):
        """tls: (certificate file, key file) to serve https."""
        super().__init__(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.requests = {}
        self.connections = 0
        self.sockets = []  # every connection's, to cut them on stop()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self):
        return self.server_address[1]

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        """Down for real: no listener, and every open connection cut."""
        self.shutdown()
        self.server_close()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request, client_address):
        pass  # a client that hung up (the node giving up on "slow" or "huge")

    def count(self, path):
        with self.lock:
            return self.requests.get(path, 0)

    def total(self):
        with self.lock:
            return sum(self.requests.values())


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the node reuses connections
    # Headers and body go in two writes: without this, Nagle holds the body
    # for the client's delayed ACK (40 ms per request).
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.server.sockets.append(self.request)

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with self.server.lock:
            self.server.requests[self.path] = self.server.requests.get(self.path, 0) + 1
        if self.path == "/stats":
            with self.server.lock:
                doc = {"requests": self.server.requests, "connections": self.server.connections}
                body = json.dumps(doc).encode()
            return self.answer(200, body)
        if not self.path.startswith("/items/"):
            return self.answer(400, b"no such route")
        key = urllib.parse.unquote_to_bytes(self.path[len("/items/"):])
        kind = key.split(b"-", 1)[0]
        now = time.time()
        if kind == b"missing":
            return self.answer(404, b"not here")
        if kind == b"gone":
            return self.answer(410)
        if kind == b"broken":
            return self.answer(500, b"boom")
        if kind == b"busy":
            return self.answer(503)
        if kind == b"moved":
            return self.answer(301, headers=[("Location", "/items/elsewhere")])
        if kind == b"slow":
            time.sleep(3)
        if kind == b"lazy":
            time.sleep(0.3)
        if kind == b"huge":
            return self.answer(200, b"x" * (2 << 20))
        if kind == b"stream":  # 2 MiB in chunks, no Content-Length
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"y" * 65536
            try:
                for _ in range(32):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True
            return
        headers = []
        if kind == b"nostore":
            headers = [("Cache-Control", "no-store")]
        elif kind == b"maxage":
            headers = [("Cache-Control", "public, max-age=60"), ("Age", "10")]
        elif kind == b"expires":
            headers = [("Date", email.utils.formatdate(now, usegmt=True)),
                       ("Expires", email.utils.formatdate(now + 30, usegmt=True))]
        return self.answer(200, b"v:" + key, headers)


if __name__ == "__main__":
    origin = Origin()
    print(f"port {origin.port}", flush=True)
    origin.serve_forever()
