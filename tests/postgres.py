"""Throwaway PostgreSQL servers on 127.0.0.1 for tests.

``start_postgres()`` runs ``initdb`` into a fresh temporary folder and starts
``postgres`` on a free loopback port (TCP on 127.0.0.1 only, the unix socket
inside that folder), then waits until it accepts connections:

    pg = start_postgres()
    url = pg.create_database()        # a fresh, empty database for one test
    ...                               # pushgw --persistence.url=<url>
    pg.stop(); pg.start()             # restart on the same port and data
    pg.close()                        # stop and delete the folder

    standby = start_standby(pg)       # a synchronous streaming replica
    fail_over(pg, standby)            # pg crashes; standby, promoted, takes pg's port

PostgreSQL refuses to run as root: as root, initdb and postgres run as the
``postgres`` system user (Debian's postgresql package creates it) or, where
that is missing, as a system user ``pushgw-test`` created here; the folder is
theirs. fsync stays on (the tests check durability); only initdb skips its
fsync, since a test never survives an OS crash anyway.

Roles: ``superuser`` (trust), ``app_user`` (trust; owns the databases
``create_database`` makes, as a deployment's pushgw would) and
``password_user``, who must give ``password`` (scram-sha-256), to test
PGPASSWORD / PGPASSFILE.

Every process is stopped through the pid this module started; nothing is
killed by name. A missing PostgreSQL skips loudly (fails under CI=true).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from servers import ServerProcess, require_peer, start_on_free_port

APT_PACKAGE = "postgresql"
DEFAULT_DATABASE = "pushgw"
RUN_AS_CANDIDATES = ("postgres", "pushgw-test")  # as root: the first that exists, else created
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# Small and fast, but durable: fsync, synchronous_commit and full_page_writes
# keep their defaults (on).
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "100",
    "shared_buffers": "16MB",
    "dynamic_shared_memory_type": "posix",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] ",
}


def postgres_bindir() -> str | None:
    """The folder of the server binaries (initdb, postgres), or None.

    ``pg_config --bindir`` first; else Debian's /usr/lib/postgresql/<major>/bin
    (off PATH), the newest major version; else initdb on PATH.
    """
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: [int(n) for n in re.findall(r"\d+", p)], reverse=True)
    candidates += versions
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(initdb))
    for folder in candidates:
        if folder and all(os.access(os.path.join(folder, b), os.X_OK) for b in ("initdb", "postgres")):
            return folder
    return None


def require_postgres() -> str:
    """The server binaries' folder; skips the test (fails under CI=true) if missing."""
    folder = postgres_bindir()
    require_peer("PostgreSQL server (initdb)",
                 os.path.join(folder, "initdb") if folder else "/usr/lib/postgresql/*/bin/initdb",
                 apt_package=APT_PACKAGE)
    return folder


def run_as_user() -> pwd.struct_passwd | None:
    """The unprivileged user to run PostgreSQL as; None when not root."""
    if os.geteuid() != 0:
        return None
    for name in RUN_AS_CANDIDATES:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    name = RUN_AS_CANDIDATES[-1]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "--user-group", name], check=True, capture_output=True, timeout=30)
    return pwd.getpwnam(name)


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time): tells a pid from its reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] == "Z" else fields[19]


def child_processes(pid: int) -> dict[int, str]:
    """Live children of ``pid``: pid -> start time."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry)] = fields[19]
    return found


class PostgresProcess(ServerProcess):
    """One run of ``postgres``; ready when ``pg_isready`` says so."""

    def probe(self) -> str | None:
        pg_isready = os.path.join(os.path.dirname(self.argv[0]), "pg_isready")
        out = subprocess.run([pg_isready, "-q", "-h", self.host, "-p", str(self.port), "-t", "1"],
                             capture_output=True, text=True, timeout=10)
        return None if out.returncode == 0 else f"pg_isready exit code {out.returncode}"

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Fast shutdown (SIGINT: clients cut, checkpoint written); SIGQUIT if stuck."""
        return self.signal_and_wait(signal.SIGINT, timeout) if self.alive() else self._exit_code()

    def signal_and_wait(self, signum: int, timeout: float) -> int | None:
        """Send ``signum`` to the postmaster and wait; escalates SIGQUIT, then SIGKILL."""
        for sig in (signum, signal.SIGQUIT, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
        return self._exit_code()

    def _exit_code(self) -> int | None:
        if self.proc is None:
            return None
        self.returncode = self.proc.wait()
        return self.returncode


class PostgresServer:
    """A PostgreSQL cluster in its own temporary folder (see the module doc).

    Attributes: ``host`` ("127.0.0.1"), ``port``, ``workdir`` (the temporary
    folder), ``data_dir``, ``socket_dir``, ``bindir``, ``superuser``,
    ``app_user``, ``password_user``, ``password``, ``database`` (the default
    database, owned by ``app_user``), ``process`` (the current run, a
    ServerProcess) and ``runs`` (every run so far).
    """

    superuser = "postgres"
    app_user = "pushgw"
    password_user = "pushgw_secret"
    database = DEFAULT_DATABASE

    def __init__(self, bindir: str, workdir: Path, user: pwd.struct_passwd | None):
        self.bindir = bindir
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.socket_dir = workdir / "socket"
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.password = secrets.token_hex(12)
        self.runs: list[PostgresProcess] = []
        self._user = user
        self._databases = 0

    # -- addresses -------------------------------------------------------
    @property
    def url(self) -> str:
        """URL of the default database, as ``app_user`` (no password needed)."""
        return self.url_for(self.database)

    def url_for(self, database: str | None = None, user: str | None = None) -> str:
        """``postgresql://USER@127.0.0.1:PORT/DATABASE?sslmode=disable`` (never a password)."""
        return (f"postgresql://{user or self.app_user}@{self.host}:{self.port}/"
                f"{database or self.database}?sslmode=disable")

    def write_passfile(self, path: str | os.PathLike, database: str = "*") -> Path:
        """A PGPASSFILE (mode 0600) with ``password_user``'s password for this server."""
        path = Path(path)
        path.write_text(f"{self.host}:{self.port}:{database}:{self.password_user}:{self.password}\n")
        path.chmod(0o600)
        return path

    def password_env(self) -> dict[str, str]:
        """Environment for a client connecting as ``password_user`` (PGPASSWORD)."""
        return {"PGPASSWORD": self.password}

    # -- life cycle ------------------------------------------------------
    @property
    def process(self) -> PostgresProcess | None:
        return self.runs[-1] if self.runs else None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def _popen_options(self) -> dict:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _argv(self, port: int) -> list[str]:
        argv = [os.path.join(self.bindir, "postgres"), "-D", str(self.data_dir), "-p", str(port),
                "-k", str(self.socket_dir)]
        for key, value in SERVER_SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return dict(env, LC_ALL="C", TZ="UTC")

    def init(self) -> None:
        """``initdb`` the data folder and allow password_user only with a password."""
        self.socket_dir.mkdir()
        if self._user is not None:
            for path in (self.workdir, self.socket_dir):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        out = subprocess.run(
            [os.path.join(self.bindir, "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=120, env=self._env(), cwd=self.workdir,
            **self._popen_options())
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        # First match wins: password_user must authenticate, everybody else is trusted.
        (self.data_dir / "pg_hba.conf").write_text(
            f"host  all  {self.password_user}  127.0.0.1/32  scram-sha-256\n"
            "host  all  all  127.0.0.1/32  trust\n"
            "host  replication  all  127.0.0.1/32  trust\n"
            "local all  all  trust\n")

    def start(self) -> "PostgresServer":
        """Start (or restart, on the same port and data) and wait until it accepts connections."""
        assert not self.alive(), "already running"
        options = dict(name="postgres", args=(), env=self._env(), ready_timeout=READY_TIMEOUT,
                       ready_path="", server_class=PostgresProcess,
                       popen_options=self._popen_options())
        if self.port is None:
            run = start_on_free_port(self._argv, **options)
            self.runs.append(run)
            self.port = run.port
        else:  # a restart keeps its port: clients reconnect to the same address
            options.pop("args"), options.pop("server_class")
            run = PostgresProcess(self._argv(self.port), self.port, cwd=self.workdir, **options)
            self.runs.append(run)
            run.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Fast shutdown (SIGINT): open connections are cut, a checkpoint is written."""
        return self.process.stop(timeout) if self.process else None

    def crash(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Immediate shutdown (SIGQUIT): no checkpoint, children stopped by the
        postmaster, crash recovery on the next start. The way to "pull the plug"."""
        if not self.alive():
            return self.process.returncode if self.process else None
        return self.process.signal_and_wait(signal.SIGQUIT, timeout)

    def kill(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGKILL of the postmaster, as ``kill -9`` would.

        Its children (backends, checkpointer...) outlive it for a moment and
        keep the shared memory, which blocks a restart: they are noted before
        the kill, waited for (they notice the postmaster's death), and killed
        by their own pids if still there after ``timeout``. Prefer crash()."""
        if not self.alive():
            return self.process.returncode if self.process else None
        children = child_processes(self.pid)
        self.process.proc.kill()
        code = self.process._exit_code()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(process_start_time(pid) != started for pid, started in children.items()):
                return code
            time.sleep(0.05)
        for pid, started in children.items():
            if process_start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)
        return code

    def output(self) -> str:
        """The server log of every run so far."""
        return "".join(f"--- run {n} (pid {r.pid}) ---\n{r.output()}" for n, r in enumerate(self.runs))

    def close(self) -> None:
        """Stop the server and delete its folder."""
        if self.alive():
            self.stop()
        for run in self.runs:
            run.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<postgres pid={self.pid} port={self.port} dir={self.workdir}>"

    # -- SQL ------------------------------------------------------------
    def psql(self, sql: str, database: str = "postgres", user: str | None = None) -> str:
        """Run ``sql`` with psql (as the superuser unless ``user``); the unaligned,
        tuples-only output. Raises RuntimeError on any error."""
        out = subprocess.run(
            [os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", self.host, "-p", str(self.port), "-U", user or self.superuser, "-d", database,
             "-c", sql],
            capture_output=True, text=True, timeout=60, env=self._env())
        if out.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout.strip()

    def create_database(self, name: str | None = None, owner: str | None = None) -> str:
        """A new empty database (default name pushgw_test_N), owned by
        ``owner`` (default ``app_user``); returns its URL as that owner."""
        if name is None:
            self._databases += 1
            name = f"pushgw_test_{self._databases}"
        owner = owner or self.app_user
        self.psql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return self.url_for(name, owner)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, cutting its connections first."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def terminate_connections(self, database: str | None = None) -> int:
        """Cut every client connection (of ``database`` if given), as a network
        failure or a failover would; returns how many were cut."""
        where = f"datname = '{database}'" if database else "datname IS NOT NULL"
        out = self.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        f"WHERE {where} AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        return int(out or 0)


def start_postgres(port: int | None = None) -> PostgresServer:
    """initdb + start a throwaway server; ``port`` for a fixed one (default: a free one).

    Creates the roles ``app_user`` and ``password_user`` and the database
    ``database`` owned by app_user. Skips the test (fails under CI=true)
    when PostgreSQL is not installed.
    """
    bindir = require_postgres()
    user = run_as_user()
    workdir = Path(tempfile.mkdtemp(prefix="pushgw-pg-"))
    server = PostgresServer(bindir, workdir, user)
    server.port = port
    try:
        server.init()
        server.start()
        server.psql(f'CREATE ROLE "{server.app_user}" LOGIN; '
                    f"CREATE ROLE \"{server.password_user}\" LOGIN PASSWORD '{server.password}'")
        server.create_database(server.database)
    except BaseException:
        print(server.output())
        server.close()
        raise
    return server


STANDBY_NAME = "standby"


def start_standby(primary: PostgresServer) -> PostgresServer:
    """A synchronous streaming replica of ``primary`` on its own free port.

    ``pg_basebackup -R`` copies the primary; then the primary waits for this
    standby on every commit (synchronous_standby_names), so whatever the
    primary acknowledged is on the standby too: what a failover to it keeps.
    Use ``fail_over(primary, standby)`` to make it the new primary.
    """
    bindir = require_postgres()
    user = run_as_user()
    workdir = Path(tempfile.mkdtemp(prefix="pushgw-pg-standby-"))
    standby = PostgresServer(bindir, workdir, user)
    standby.password = primary.password
    try:
        standby.socket_dir.mkdir()
        if user is not None:
            for path in (workdir, standby.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        conninfo = (f"host={primary.host} port={primary.port} user={primary.superuser} "
                    f"application_name={STANDBY_NAME}")
        out = subprocess.run(
            [os.path.join(bindir, "pg_basebackup"), "-D", str(standby.data_dir), "-d", conninfo,
             "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"],
            capture_output=True, text=True, timeout=120, env=standby._env(), cwd=workdir,
            **standby._popen_options())
        if out.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        standby.start()
        primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
        primary.psql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + READY_TIMEOUT
        while primary.psql("SELECT sync_state FROM pg_stat_replication "
                           f"WHERE application_name = '{STANDBY_NAME}'") != "sync":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby is not a synchronous replica after {READY_TIMEOUT}s\n"
                                   f"{standby.output()}")
            time.sleep(0.05)
    except BaseException:
        print(standby.output())
        standby.close()
        raise
    return standby


def fail_over(primary: PostgresServer, standby: PostgresServer) -> None:
    """A failover behind the same address: the primary crashes (SIGQUIT), the
    standby is promoted and moves to the primary's port, so clients of
    ``primary.url`` reconnect to a new server (a new timeline) holding every
    commit the old one acknowledged. Afterwards ``standby`` serves the
    primary's address; do not start ``primary`` again (its port is taken)."""
    primary.crash()
    if standby.psql("SELECT pg_promote(true, 30)") != "t":
        raise RuntimeError(f"the standby was not promoted\n{standby.output()}")
    standby.stop()
    standby.port = primary.port
    standby.start()
