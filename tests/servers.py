"""Real server processes on 127.0.0.1 for tests.

Helpers to start pushgw (``python -m pushgw``) and the official Prometheus
Pushgateway as child processes on free local ports, wait until they are
ready, and stop them again by their own pid.

    with start_pushgw("--web.enable-admin-api") as gw:
        requests.put(gw.url + "/metrics/job/j", data=b"a 1\n")
        gw.stop()          # -> exit code (also done on leaving the block)

Nothing here kills processes by name: every process is stopped through the
``subprocess.Popen`` object that started it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

OFFICIAL_DEFAULT_PATH = "/usr/bin/prometheus-pushgateway"
OFFICIAL_APT_PACKAGE = "prometheus-pushgateway"
REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_READY_TIMEOUT = 15.0
DEFAULT_STOP_TIMEOUT = 5.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def route_prefix_from_args(args) -> str:
    """The route prefix implied by ``--web.route-prefix`` / ``--web.external-url``.

    Mirrors the official rule: the route prefix defaults to the path of the
    external URL; "/" means no prefix; otherwise it starts with "/" and does
    not end with one.
    """
    prefix = None
    external = ""
    for a in args:
        if a.startswith("--web.route-prefix="):
            prefix = a.split("=", 1)[1]
        elif a.startswith("--web.external-url="):
            external = a.split("=", 1)[1]
    if not prefix:
        prefix = urllib.parse.urlsplit(external).path if external else ""
    if prefix in ("", "/"):
        return ""
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix.rstrip("/")


class ServerProcess:
    """A server started with ``subprocess.Popen`` on 127.0.0.1:``port``.

    ``argv`` is the full command line (the caller puts the port in it).
    Output (stdout and stderr together) goes to a temporary file, readable
    with :meth:`output`. :meth:`start` waits until ``GET <url><ready_path>``
    answers 200, or raises ``RuntimeError`` with the captured output.
    """

    def __init__(
        self,
        argv: list[str],
        port: int,
        *,
        name: str = "server",
        env: dict[str, str] | None = None,
        ready_path: str = "/-/ready",
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        cwd: str | os.PathLike | None = None,
        scheme: str = "http",
        ready_headers: dict[str, str] | None = None,
        ready_context: ssl.SSLContext | None = None,
        popen_options: dict | None = None,
    ):
        self.argv = list(argv)
        self.port = port
        self.name = name
        self.env = env
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self.cwd = cwd
        self.host = "127.0.0.1"
        self.prefix = ""  # route prefix (set by start_pushgw/start_official)
        self.url = f"{scheme}://{self.host}:{port}"
        # For a server behind TLS or basic auth (--web.config.file): what the
        # readiness check needs to get through.
        self.ready_headers = ready_headers or {}
        self.ready_context = ready_context
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._log = None
        # Extra subprocess.Popen arguments (e.g. user=, group= to drop root).
        self.popen_options = popen_options or {}

    # -- life cycle -------------------------------------------------------
    def start(self) -> "ServerProcess":
        self._log = tempfile.TemporaryFile(prefix=f"{self.name}-", suffix=".log")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            **self.popen_options,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {rc} before becoming ready\n"
                    f"command: {self.argv!r}\noutput:\n{self.output()}"
                )
            last_error = self.probe()
            if last_error is None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} not ready at {self.url}{self.ready_path} after "
                    f"{self.ready_timeout}s (last: {last_error})\n"
                    f"command: {self.argv!r}\noutput:\n{self.output()}"
                )
            time.sleep(0.05)

    def probe(self) -> str | None:
        """One readiness check: None when ready, else what was seen.

        ``GET <url><ready_path>`` must answer 200; servers that are not
        HTTP (PostgreSQL) override this.
        """
        try:
            request = urllib.request.Request(self.url + self.ready_path, headers=self.ready_headers)
            with urllib.request.urlopen(request, timeout=1, context=self.ready_context) as r:
                return None if r.status == 200 else f"status {r.status}"
        except urllib.error.HTTPError as e:
            return f"status {e.code}"
        except (OSError, urllib.error.URLError) as e:
            return repr(e)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit on its own; returns its exit code."""
        rc = self.proc.wait(timeout=timeout)
        self.returncode = rc
        return rc

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code.

        Idempotent: a second call returns the same exit code.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.returncode = self.proc.returncode
        return self.returncode

    def output(self) -> str:
        """Everything the process wrote to stdout/stderr so far."""
        if self._log is None:
            return ""
        try:
            self._log.flush()
            pos = self._log.tell()
            self._log.seek(0)
            data = self._log.read()
            self._log.seek(pos)
        except (OSError, ValueError):
            return "<output unavailable>"
        return data.decode("utf-8", "replace")

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "ServerProcess":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid} url={self.url}>"


def start_on_free_port(make_argv, *, name, args, env=None, ready_timeout=DEFAULT_READY_TIMEOUT,
           ready_path=None, attempts=3, server_class=ServerProcess, **ready) -> ServerProcess:
    """Start a server on a fresh free port, retrying if the port got taken.

    ``make_argv(port)`` gives the command line; ``server_class`` is
    ServerProcess or a subclass with its own readiness probe.
    """
    if ready_path is None:
        ready_path = route_prefix_from_args(args) + "/-/ready"
    last = None
    for _ in range(attempts):
        port = free_port()
        server = server_class(make_argv(port), port, name=name, env=env,
                              ready_path=ready_path, ready_timeout=ready_timeout,
                              cwd=REPO_ROOT, **ready)
        server.prefix = route_prefix_from_args(args)
        try:
            return server.start()
        except RuntimeError as e:
            last = e
            out = server.output().lower()
            server.close()
            if "in use" not in out:  # only a lost race for the port is retried
                raise
    raise last


def start_pushgw(*args: str, env: dict[str, str] | None = None,
                 ready_timeout: float = DEFAULT_READY_TIMEOUT,
                 ready_path: str | None = None, **ready) -> ServerProcess:
    """Start ``python -m pushgw --web.listen-address=127.0.0.1:PORT *args``.

    ``env`` is added to (and overrides parts of) the inherited environment;
    PYTHONUNBUFFERED=1 is set so the captured output is complete. Waits until
    ``/-/ready`` (under the route prefix implied by ``args``) answers 200.
    ``ready`` may give ``scheme="https"``, ``ready_headers`` (e.g. basic auth)
    and ``ready_context`` (an SSLContext) for a server with a web config file.
    """
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return start_on_free_port(
        lambda port: [sys.executable, "-m", "pushgw",
                      f"--web.listen-address=127.0.0.1:{port}", *args],
        name="pushgw", args=args, env=full_env, ready_timeout=ready_timeout,
        ready_path=ready_path, **ready,
    )


def official_binary() -> str | None:
    """Path of the official Pushgateway binary, or None if not installed."""
    found = shutil.which("prometheus-pushgateway")
    if found:
        return found
    if os.path.isfile(OFFICIAL_DEFAULT_PATH) and os.access(OFFICIAL_DEFAULT_PATH, os.X_OK):
        return OFFICIAL_DEFAULT_PATH
    return None


def start_official(*args: str, ready_timeout: float = DEFAULT_READY_TIMEOUT,
                   ready_path: str | None = None, persistence_file: str = "") -> ServerProcess:
    """Start the official Pushgateway, memory only (unless ``persistence_file``), on a free port.

    Runs ``prometheus-pushgateway --web.listen-address=127.0.0.1:PORT
    --persistence.file=PERSISTENCE_FILE *args`` (an empty persistence file keeps Debian's
    build from touching /var/lib/prometheus). Fails the test (or skips it,
    outside CI) if the binary is missing.
    """
    binary = require_peer("prometheus-pushgateway",
                          official_binary() or OFFICIAL_DEFAULT_PATH,
                          apt_package=OFFICIAL_APT_PACKAGE)
    return start_on_free_port(
        lambda port: [binary, f"--web.listen-address=127.0.0.1:{port}",
                      f"--persistence.file={persistence_file}", *args],
        name="official-pushgateway", args=args, ready_timeout=ready_timeout,
        ready_path=ready_path,
    )


def http_request(method: str, url: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 5.0):
    """Minimal HTTP client: returns (status, headers, body bytes); no redirects."""
    import http.client

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def wipe_and_wait(server: ServerProcess, timeout: float = 5.0) -> None:
    """``PUT /api/v1/admin/wipe`` then poll ``/api/v1/metrics`` until empty.

    The server must run with ``--web.enable-admin-api``. The official gateway
    wipes asynchronously, hence the (bounded) polling.
    """
    import json

    base = server.url + server.prefix
    status, _, body = http_request("PUT", base + "/api/v1/admin/wipe")
    if status != 202:
        raise AssertionError(f"wipe on {server!r} answered {status}: {body[:200]!r}")
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = http_request("GET", base + "/api/v1/metrics")
        data = json.loads(body).get("data") if status == 200 else None
        if status == 200 and not data:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{server!r} still has data {timeout}s after wipe: "
                                 f"{status} {body[:300]!r}")
        time.sleep(0.01)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require_peer(name: str, path: str | None, apt_package: str | None = None) -> str:
    """Return ``path`` if it is an executable file; otherwise skip or fail.

    ``name`` is the program's name (also the apt package to suggest unless
    ``apt_package`` is given).

    Outside CI a missing peer program skips the test with a loud reason; with
    ``CI=true`` it fails the test instead (a skipped peer test is a failure
    under CI).
    """
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    package = apt_package or name
    reason = (f"PEER MISSING: {name} not found (looked for {path or name + ' on PATH'}); "
              f"install with apt-get install {package}")
    if in_ci():
        pytest.fail(reason + " [CI=true: a missing peer is a failure]", pytrace=False)
    pytest.skip(reason)


# -- Prometheus server ------------------------------------------------------

PROMETHEUS_DEFAULT_PATH = "/usr/bin/prometheus"
PROMETHEUS_APT_PACKAGE = "prometheus"


def prometheus_binary() -> str | None:
    """Path of the Prometheus server binary, or None if not installed."""
    found = shutil.which("prometheus")
    if found:
        return found
    if os.path.isfile(PROMETHEUS_DEFAULT_PATH) and os.access(PROMETHEUS_DEFAULT_PATH, os.X_OK):
        return PROMETHEUS_DEFAULT_PATH
    return None


def prometheus_version(binary: str) -> tuple[int, int, int]:
    """``prometheus --version`` as (major, minor, patch), e.g. (2, 42, 0) for 2.42.0+ds."""
    import re

    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    if not match:
        raise RuntimeError(f"cannot read the version of {binary}: {out.stdout!r} {out.stderr!r}")
    return tuple(int(part) for part in match.groups())


def start_prometheus(config_text: str, tmp_path: str | os.PathLike, *flags: str,
                     ready_timeout: float = 30.0) -> ServerProcess:
    """Start a Prometheus server of its own on 127.0.0.1:PORT (a free port).

    Writes ``config_text`` to a fresh directory under ``tmp_path`` and runs
    ``prometheus --config.file=<dir>/prometheus.yml --storage.tsdb.path=<dir>/data
    --web.listen-address=127.0.0.1:PORT *flags``; waits until ``/-/ready``
    answers 200. Never uses a system service that may listen on :9090; stop
    it with ``.stop()`` / ``.close()`` (by its own pid). Fails the test (or
    skips it, outside CI) if the binary is missing.
    """
    binary = require_peer("prometheus", prometheus_binary() or PROMETHEUS_DEFAULT_PATH,
                          apt_package=PROMETHEUS_APT_PACKAGE)
    workdir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=tmp_path))
    config = workdir / "prometheus.yml"
    config.write_text(config_text)
    return start_on_free_port(
        lambda port: [binary, f"--config.file={config}",
                      f"--storage.tsdb.path={workdir / 'data'}",
                      f"--web.listen-address=127.0.0.1:{port}", *flags],
        name="prometheus", args=flags, ready_timeout=ready_timeout,
    )
