"""Gateway processes for the benchmark: start, wait ready, measure, stop by pid.

Every process is started with ``subprocess.Popen`` and stopped through that
object (SIGTERM, then SIGKILL on a bounded timeout), never by name, so a
benchmark run cannot touch anyone else's gateways.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OFFICIAL_DEFAULT = "/usr/bin/prometheus-pushgateway"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_RUNNING: list["Gateway"] = []  # every started gateway, so a crash still stops them
PUSHGW_SRC = REPO  # directory holding the ``pushgw`` package that runs (see snapshot_pushgw)


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pushgw_python() -> str:
    """The venv's interpreter when present: pushgw is installed there."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def snapshot_pushgw(dest: Path) -> str:
    """Copy pushgw/ to ``dest`` and run it from there; returns "" or why it cannot start.

    Others edit pushgw/ while benchmarks run: a snapshot keeps one code
    version for the whole run (``python -m`` finds the package in its cwd
    before the editable install). It is byte-compiled, as an install is
    (pip, the Docker image): where PYTHONDONTWRITEBYTECODE is set, every
    start would otherwise compile the sources again, which no deployment does.
    """
    global PUSHGW_SRC
    shutil.copytree(REPO / "pushgw", dest / "pushgw", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([pushgw_python(), "-m", "compileall", "-q", str(dest / "pushgw")], check=True, timeout=120)
    check = subprocess.run([pushgw_python(), "-c", "import pushgw, pushgw.server; print(pushgw.__file__)"],
                           cwd=dest, capture_output=True, text=True, timeout=60)
    if check.returncode != 0 or not check.stdout.strip().startswith(str(dest)):
        return (check.stderr.strip().splitlines() or [check.stdout.strip()])[-1]
    PUSHGW_SRC = dest
    return ""


def official_binary() -> str | None:
    """Path of the official Pushgateway, or None when not installed."""
    found = shutil.which("prometheus-pushgateway")
    if found:
        return found
    return OFFICIAL_DEFAULT if os.access(OFFICIAL_DEFAULT, os.X_OK) else None


@dataclass
class Gateway:
    """One gateway process on 127.0.0.1; ``kind`` is "pushgw" or "official"."""

    kind: str
    flags: list[str]
    port: int = 0
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    log: object = None
    idle_rss_kb: int = 0
    notes: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        listen = f"--web.listen-address=127.0.0.1:{self.port}"
        if self.kind == "pushgw":
            return [pushgw_python(), "-m", "pushgw", listen, *self.flags]
        return [official_binary() or OFFICIAL_DEFAULT, listen, *self.flags]

    def output(self) -> str:
        """What the process logged so far (for error messages)."""
        if self.log is None:
            return ""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")


def start(kind: str, flags: list[str], ready_timeout: float = 120.0) -> Gateway:
    """Start a gateway on a fresh port and wait until ``/-/ready`` answers 200."""
    gw = start_unready(kind, flags)
    wait_ready(gw, ready_timeout)
    time.sleep(0.2)  # let start-up allocations settle before the idle RSS
    gw.idle_rss_kb = rss_kb(gw.pid)
    return gw


def start_unready(kind: str, flags: list[str]) -> Gateway:
    """Start a gateway and return at once; ``started_at`` is taken just before exec."""
    gw = Gateway(kind, list(flags))
    gw.port = free_port()
    gw.log = tempfile.TemporaryFile(prefix=f"bench-{kind}-")
    gw.started_at = time.monotonic()
    gw.proc = subprocess.Popen(gw.argv(), stdin=subprocess.DEVNULL, stdout=gw.log, stderr=subprocess.STDOUT,
                               cwd=PUSHGW_SRC if kind == "pushgw" else REPO)
    _RUNNING.append(gw)
    return gw


def wait_ready(gw: Gateway, timeout: float) -> float:
    """Poll ``/-/ready`` every 10 ms; returns seconds since the process started."""
    deadline = time.monotonic() + timeout
    while True:
        if gw.proc.poll() is not None:
            raise RuntimeError(f"{gw.kind} exited with {gw.proc.returncode} before ready:\n{gw.output()[-3000:]}")
        try:
            with urllib.request.urlopen(gw.url + "/-/ready", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - gw.started_at
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            stop(gw)
            raise RuntimeError(f"{gw.kind} not ready after {timeout}s:\n{gw.output()[-3000:]}")
        time.sleep(0.01)


def stop(gw: Gateway, timeout: float = 120.0) -> tuple[int | None, float]:
    """SIGTERM this gateway's own pid, SIGKILL after ``timeout``; returns (exit code, seconds).

    The timeout is long because the official writes its persistence file on
    shutdown, which takes seconds at 1M series.
    """
    if gw.proc is None:
        return None, 0.0
    t0 = time.monotonic()
    if gw.proc.poll() is None:
        gw.proc.send_signal(signal.SIGTERM)
        try:
            gw.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            gw.proc.kill()
            gw.proc.wait(timeout=10)
    if gw in _RUNNING:
        _RUNNING.remove(gw)
    return gw.proc.returncode, time.monotonic() - t0


def stop_all() -> None:
    """Stop every gateway this run started (used on errors and Ctrl-C)."""
    for gw in list(reversed(_RUNNING)):
        stop(gw, timeout=10)


# --- /proc measurements ---------------------------------------------------------


def tree_pids(root: int) -> list[int]:
    """``root`` and its descendants, so a server with worker processes is measured whole."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def cpu_seconds(root: int) -> float:
    """User + system CPU of the process tree, from /proc/PID/stat."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def rss_kb(root: int, key: str = "VmRSS") -> int:
    """Resident memory of the process tree in kB, from /proc/PID/status."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total
