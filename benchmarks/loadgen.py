"""Running a load generator in its own process and reading its result.

wrk (with the Lua scripts in ``lua/``) when installed, else the Python
fallback ``push_client.py``. Both print one ``BENCH_RESULT {json}`` line. The
generator's CPU time comes from wait4(), so a saturated generator shows next
to the server's CPU time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = HERE / "lua"


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    gen_cpu: float  # generator user+system CPU seconds
    raw: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def wrk_seconds(seconds: float) -> int:
    """wrk takes whole seconds only."""
    return max(1, round(seconds))


def generator_name() -> str:
    """wrk when installed, unless BENCH_GENERATOR=python asks for the fallback (to test it)."""
    if os.environ.get("BENCH_GENERATOR") == "python" or not shutil.which("wrk"):
        return "python-fallback"
    return "wrk"


@dataclass
class Child:
    """A child process with its CPU time, reaped with wait4()."""

    stdout: str
    returncode: int
    cpu: float
    wall: float


def spawn(argv: list[str]) -> subprocess.Popen:
    """Start a generator process; its output is collected by reap()."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    os.set_blocking(proc.stdout.fileno(), False)
    return proc


def reap(proc: subprocess.Popen, timeout: float) -> Child:
    """Wait for ``proc`` (SIGKILL at ``timeout``); returns output, exit code and CPU from wait4()."""
    t0 = time.monotonic()
    chunks: list[bytes] = []
    while True:
        _read_available(proc, chunks)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t0 > timeout:
            proc.send_signal(signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; tell Popen
    _read_available(proc, chunks)
    proc.stdout.close()
    return Child(b"".join(chunks).decode("utf-8", "replace"), proc.returncode,
                 usage.ru_utime + usage.ru_stime, time.monotonic() - t0)


def run_child(argv: list[str], timeout: float) -> Child:
    """Run ``argv`` to completion (SIGKILL at ``timeout``)."""
    return reap(spawn(argv), timeout)


def _read_available(proc: subprocess.Popen, chunks: list[bytes]) -> None:
    while True:
        try:
            data = os.read(proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return
        if not data:
            return
        chunks.append(data)


def parse_result(child: Child) -> LoadResult:
    """The ``BENCH_RESULT`` line of a generator's output."""
    for line in child.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            r = json.loads(line[len("BENCH_RESULT "):])
            errors = {k: int(r[k]) for k in ("connect", "read", "write", "status", "timeout")}
            return LoadResult(int(r["requests"]), r["duration_us"] / 1e6, r["p50_us"] / 1e3,
                              r["p99_us"] / 1e3, errors, child.cpu, r)
    raise RuntimeError(f"load generator gave no result (exit {child.returncode}):\n{child.stdout[-2000:]}")


def push_groups(url: str, groups: int, series: int, token: int, seconds: float,
                connections: int, method: str = "PUT") -> LoadResult:
    """Small pushes round-robin over ``groups`` groups for ``seconds``."""
    args = [str(groups), str(series), str(token), method, "1"]
    if generator_name() == "wrk":
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{wrk_seconds(seconds)}s", "--timeout", "60s",
                "-s", str(LUA / "push_groups.lua"), url, "--", *args]
    else:
        argv = [sys.executable, str(HERE / "push_client.py"), "groups", url, str(seconds),
                str(connections), *args]
    return parse_result(run_child(argv, timeout=seconds + 90))


def push_body(url: str, method: str, path: str, body_file: str, seconds: float,
              connections: int, vary: bool = False) -> LoadResult:
    """One body pushed to one path over and over for ``seconds``.

    ``vary`` adds a series of its own to each push (payloads.shape_line).
    """
    extra = ["vary"] if vary else []
    if generator_name() == "wrk":
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{wrk_seconds(seconds)}s", "--timeout", "60s",
                "-s", str(LUA / "push_body.lua"), url, "--", method, path, body_file, *extra]
    else:
        argv = [sys.executable, str(HERE / "push_client.py"), "body", url, str(seconds),
                str(connections), method, path, body_file, *extra]
    return parse_result(run_child(argv, timeout=seconds + 90))
