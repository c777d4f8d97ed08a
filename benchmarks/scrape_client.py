"""Scrape client, run as its own process: timed GET /metrics over a raw keep-alive socket.

    scrape_client.py URL --count N [--gzip] [--change METHOD PATH BODY_FILE] [--save FILE]
    scrape_client.py URL --interval 1 --duration 10 [--save FILE]

A raw socket reading into one reused buffer keeps the client's cost well
below the server's even for an 80 MB body (http.client, or appending to a
fresh buffer per scrape, costs ~50-100 ms more at 1M series). With ``--change`` every
scrape follows a push, so the server cannot answer from a cached body.
Prints one ``SCRAPE_RESULT {json}`` line: latencies in ms and body sizes.
The last body (de-chunked, gunzipped) goes to ``--save`` for the checks.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import socket
import sys
import time
import urllib.parse
from pathlib import Path

READ_SIZE = 4 << 20


class Buffer:
    """One receive buffer, kept across scrapes: no copies, no fresh pages to fault in."""

    def __init__(self, capacity: int = 1 << 20) -> None:
        self.data = bytearray(capacity)
        self.view = memoryview(self.data)
        self.n = 0

    def reserve(self, size: int) -> None:
        if size > len(self.data):
            bigger = bytearray(max(size, 2 * len(self.data)))
            bigger[: self.n] = self.view[: self.n]
            self.view.release()
            self.data, self.view = bigger, memoryview(bigger)

    def fill(self, sock: socket.socket) -> bool:
        if self.n == len(self.data):
            self.reserve(2 * len(self.data))
        got = sock.recv_into(self.view[self.n:], min(READ_SIZE, len(self.data) - self.n))
        self.n += got
        return got > 0

    def need(self, sock: socket.socket, size: int) -> None:
        self.reserve(size)
        while self.n < size:
            if not self.fill(sock):
                raise ConnectionError("connection closed mid-response")

    def find(self, sock: socket.socket, token: bytes, start: int) -> int:
        while True:
            at = self.data.find(token, start, self.n)
            if at >= 0:
                return at
            start = max(start, self.n - len(token))
            if not self.fill(sock):
                raise ConnectionError("connection closed mid-response")


_BUFFER = Buffer()


class Response:
    """A raw HTTP response: status, headers and the spans of its body in the shared buffer.

    The spans are valid until the next request; ``body()`` copies the body out.
    """

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.spans: list[tuple[int, int]] = []
        self.close = False
        self._body: bytes | None = None

    def size(self) -> int:
        return sum(b - a for a, b in self.spans)

    def keep(self) -> None:
        """Copy the body out of the shared buffer before it is reused."""
        if self._body is None:
            self._body = b"".join(bytes(_BUFFER.view[a:b]) for a, b in self.spans)

    def body(self) -> bytes:
        self.keep()
        if self.headers.get("content-encoding", "").lower() == "gzip":
            return gzip.decompress(self._body)
        return self._body


def get(sock: socket.socket, host: str, path: str, accept_gzip: bool) -> Response:
    """Send one GET and read the whole response (Content-Length, chunked or until close)."""
    enc = "gzip" if accept_gzip else "identity"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: {enc}\r\n"
                 f"Accept: text/plain\r\nUser-Agent: bench\r\n\r\n".encode())
    buf = _BUFFER
    buf.n = 0
    resp = Response()
    end = buf.find(sock, b"\r\n\r\n", 0)
    head = bytes(buf.view[:end]).decode("latin-1").split("\r\n")
    resp.status = int(head[0].split()[1])
    for line in head[1:]:
        name, _, value = line.partition(":")
        resp.headers[name.strip().lower()] = value.strip()
    resp.close = resp.headers.get("connection", "").lower() == "close"
    pos = end + 4
    if "chunked" in resp.headers.get("transfer-encoding", "").lower():
        read_chunked(sock, resp, pos)
    elif "content-length" in resp.headers:
        size = int(resp.headers["content-length"])
        buf.need(sock, pos + size)
        resp.spans.append((pos, pos + size))
    else:
        while buf.fill(sock):
            pass
        resp.spans.append((pos, buf.n))
        resp.close = True
    return resp


def read_chunked(sock: socket.socket, resp: Response, pos: int) -> None:
    """Follow the chunk framing as bytes arrive; record where the data is."""
    buf = _BUFFER
    while True:
        eol = buf.find(sock, b"\r\n", pos)
        size = int(bytes(buf.view[pos:eol]).split(b";")[0], 16)
        if size == 0:
            buf.find(sock, b"\r\n\r\n", eol)  # no trailers expected: the blank line ends it
            return
        start = eol + 2
        buf.need(sock, start + size + 2)
        resp.spans.append((start, start + size))
        pos = start + size + 2


def connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def timed_scrape(url: str, accept_gzip: bool = False, sock: socket.socket | None = None
                 ) -> tuple[float, Response, socket.socket | None]:
    """One scrape; returns (seconds, response, socket to reuse or None)."""
    parts = urllib.parse.urlsplit(url)
    own = sock is None
    if own:
        sock = connect(parts.hostname, parts.port)
    t0 = time.perf_counter()
    resp = get(sock, f"{parts.hostname}:{parts.port}", parts.path or "/metrics", accept_gzip)
    elapsed = time.perf_counter() - t0
    if resp.close or own:
        sock.close()
        sock = None
    return elapsed, resp, sock


def push(url: str, method: str, path: str, body: bytes) -> int:
    """The change before a scrape (untimed)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")  # http://127.0.0.1:PORT/metrics
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--change", nargs=3, metavar=("METHOD", "PATH", "BODY_FILE"))
    ap.add_argument("--interval", type=float, default=0.0)
    ap.add_argument("--duration", type=float, default=0.0)
    ap.add_argument("--deadline", type=float, default=300.0, help="hard bound on the whole run")
    ap.add_argument("--save")
    ap.add_argument("--reserve-mb", type=int, default=1, help="receive buffer to allocate (and touch) up front")
    a = ap.parse_args(argv)
    _BUFFER.reserve(a.reserve_mb << 20)
    change_body = Path(a.change[2]).read_bytes() if a.change else b""
    parts = urllib.parse.urlsplit(a.url)
    base = f"{parts.scheme}://{parts.netloc}"
    latencies, sizes, errors, change_errors = [], [], 0, 0
    t_start = time.monotonic()
    stop_at = t_start + (a.duration or a.deadline)
    sock, last = None, None
    k = 0
    while time.monotonic() < min(stop_at, t_start + a.deadline) and (not a.count or k < a.count):
        if a.interval:
            time.sleep(max(0.0, t_start + k * a.interval - time.monotonic()))
        k += 1
        if a.change and push(base, a.change[0], a.change[1], change_body) >= 400:
            change_errors += 1
        try:
            elapsed, resp, sock = timed_scrape(a.url, a.gzip, sock or connect(parts.hostname, parts.port))
        except OSError:
            errors += 1
            sock, last = None, None  # the shared buffer no longer holds the last good body
            continue
        if resp.status != 200:
            errors += 1
        latencies.append(elapsed * 1e3)
        sizes.append(resp.size())
        last = resp
    if sock is not None:
        sock.close()
    if a.save and last is not None:
        Path(a.save).write_bytes(last.body())
    print("SCRAPE_RESULT " + json.dumps({"latencies_ms": latencies, "bytes": sizes, "errors": errors,
                                         "change_errors": change_errors}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
