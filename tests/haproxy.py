"""A throwaway HAProxy (Debian's haproxy) in front of pushgw replicas, for tests.

    with start_haproxy([(gw1.host, gw1.port), (gw2.host, gw2.port)]) as lb:
        requests.get(lb.url + "/metrics")   # answered by one replica
        lb.wait_states({"r0": "UP", "r1": "DOWN"})

The configuration is what a deployment would use (deploy/cluster/haproxy.cfg
says the same, with production timings): HTTP mode, round robin, a health
check of ``GET /-/ready`` expecting 200, ``option redispatch`` plus
``retries`` so a request whose connection to a dead replica fails goes to
another one. Checks are fast here (every 200 ms, down after 2 failures, up
after 2 successes). Each response carries ``X-Pushgw-Backend: rN`` (the
replica that answered), so tests can see the spreading. The admin socket
in the temporary folder answers ``show stat``; no second port is opened.

The config is checked with ``haproxy -c -f`` first. HAProxy runs in the
foreground (-db) and is stopped by its own pid (SIGTERM: hard stop).
A missing haproxy skips loudly (fails under CI=true).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from servers import ServerProcess, require_peer, start_on_free_port

APT_PACKAGE = "haproxy"
BACKEND = "pushgw"


def haproxy_binary() -> str:
    """Path of haproxy; skips the test (fails under CI=true) if missing."""
    return require_peer("haproxy", shutil.which("haproxy") or "/usr/sbin/haproxy",
                        apt_package=APT_PACKAGE)


def haproxy_config(port: int, backends: list[tuple[str, int]], health_path: str,
                   admin_socket: Path) -> str:
    servers = "\n".join(f"    server r{n} {host}:{backend_port} check"
                        for n, (host, backend_port) in enumerate(backends))
    return f"""\
global
    maxconn 2000
    stats socket {admin_socket} mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    retries 3
    option redispatch

frontend pushgw
    bind 127.0.0.1:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET {health_path}
    http-check expect status 200
    http-response set-header X-Pushgw-Backend %s
    default-server inter 200ms fall 2 rise 2
{servers}
"""


class HAProxyServer(ServerProcess):
    """haproxy on 127.0.0.1:``port`` (``url``); ready when its admin socket answers.

    ``backends`` are the (host, port) pairs, named r0, r1, ... in that order
    (in the built-in configuration); ``backend`` is the backend section's
    name; ``config_path`` is the configuration it runs with.
    """

    def __init__(self, argv: list[str], port: int, *, admin_socket: Path,
                 backends: list[tuple[str, int]], config_path: Path, backend: str = BACKEND,
                 **options):
        super().__init__(argv, port, **options)
        self.backend = backend
        self.admin_socket = admin_socket
        self.backends = list(backends)
        self.config_path = config_path

    def probe(self) -> str | None:
        try:
            self.admin("show info")
            return None
        except OSError as e:
            return repr(e)

    def admin(self, command: str) -> str:
        """One command on the admin socket (e.g. "show stat"); its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(self.admin_socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Each replica's state as HAProxy sees it: {"r0": "UP", "r1": "DOWN", ...}
        (also "UP 1/2", "DOWN 1/2" while a state is changing)."""
        text = self.admin("show stat").lstrip("# ")
        return {row["svname"]: row["status"] for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == self.backend and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_states(self, expected: dict[str, str], timeout: float = 10.0) -> dict[str, str]:
        """Wait until every named replica is in its expected state; raises on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if all(states.get(name) == state for name, state in expected.items()):
                return states
            if time.monotonic() > deadline:
                raise AssertionError(f"HAProxy states {states} after {timeout}s, wanted {expected}")
            time.sleep(0.05)

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.config_path.parent, ignore_errors=True)


def start_haproxy(backends: list[tuple[str, int]], health_path: str = "/-/ready", *,
                  make_config: Callable[[int, Path], str] | None = None,
                  backend: str = BACKEND) -> HAProxyServer:
    """Start HAProxy on a free 127.0.0.1 port, balancing over ``backends``.

    ``make_config(port, admin_socket)`` replaces the built-in configuration
    (tests/test_deploy.py runs deploy/cluster/haproxy.cfg this way); it must
    bind 127.0.0.1:port, declare the admin socket and name its backend
    section ``backend``.
    """
    if make_config is None:
        def make_config(port: int, admin_socket: Path) -> str:
            return haproxy_config(port, backends, health_path, admin_socket)
    binary = haproxy_binary()
    workdir = Path(tempfile.mkdtemp(prefix="pushgw-haproxy-"))
    config = workdir / "haproxy.cfg"
    admin_socket = workdir / "admin.sock"

    def argv(port: int) -> list[str]:
        config.write_text(make_config(port, admin_socket))
        check = subprocess.run([binary, "-c", "-q", "-f", str(config)],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c rejects {config}:\n{check.stdout}{check.stderr}")
        if admin_socket.exists():
            os.unlink(admin_socket)  # left by a run that lost its port
        return [binary, "-db", "-f", str(config)]

    try:
        return start_on_free_port(argv, name="haproxy", args=(), ready_path="",
                                  server_class=HAProxyServer, admin_socket=admin_socket,
                                  backends=backends, config_path=config, backend=backend)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
