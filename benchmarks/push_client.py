"""Fallback load generator when wrk is not installed: threads over keep-alive connections.

    push_client.py groups URL SECONDS CONNECTIONS GROUPS SERIES TOKEN METHOD THREADS
    push_client.py body   URL SECONDS CONNECTIONS METHOD PATH BODY_FILE [vary]

Sends the same requests as lua/push_groups.lua and lua/push_body.lua and
prints the same ``BENCH_RESULT {json}`` line. It is slower than wrk (the
GIL), which is why the benchmark says when it is in use.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from payloads import push_body, push_path, shape_line  # noqa: E402

HEADERS = {"Content-Type": "text/plain; version=0.0.4"}


def worker(host: str, port: int, requests: list[tuple[str, str, bytes]], start: int, step: int,
           deadline: float, out: dict, vary: bool) -> None:
    """Send requests ``start, start+step, ...`` until ``deadline``; record latencies."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    k = start
    while time.monotonic() < deadline:
        method, path, body = requests[k % len(requests)]
        k += step
        if vary:
            body += shape_line(start, k)
        t0 = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=HEADERS)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            out["read"] += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=60)
            continue
        out["latencies"].append(time.monotonic() - t0)
        if resp.status >= 400:
            out["status"] += 1
    conn.close()


def run(url: str, seconds: float, connections: int, requests: list[tuple[str, str, bytes]],
        vary: bool = False) -> dict:
    parts = urllib.parse.urlsplit(url)
    results = [{"latencies": [], "read": 0, "status": 0} for _ in range(connections)]
    t0 = time.monotonic()
    deadline = t0 + seconds
    threads = [threading.Thread(target=worker, args=(parts.hostname, parts.port, requests, i,
                                                     connections, deadline, results[i], vary))
               for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    elapsed = time.monotonic() - t0
    lat = sorted(x for r in results for x in r["latencies"])

    def pct(p: float) -> int:
        return int(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e6) if lat else 0

    return {"requests": len(lat), "duration_us": int(elapsed * 1e6), "connect": 0,
            "read": sum(r["read"] for r in results), "write": 0,
            "status": sum(r["status"] for r in results), "timeout": 0,
            "p50_us": pct(50), "p99_us": pct(99), "max_us": int(lat[-1] * 1e6) if lat else 0}


def main(argv: list[str]) -> int:
    mode, url, seconds, connections = argv[0], argv[1], float(argv[2]), int(argv[3])
    if mode == "groups":
        groups, series, token, method = int(argv[4]), int(argv[5]), int(argv[6]), argv[7]
        requests = [(method, push_path(g), push_body(token, g, series)) for g in range(groups)]
        vary = False
    else:
        method, path, body_file = argv[4], argv[5], argv[6]
        requests = [(method, path, Path(body_file).read_bytes())]
        vary = argv[7:8] == ["vary"]
    print("BENCH_RESULT " + json.dumps(run(url, seconds, connections, requests, vary)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
