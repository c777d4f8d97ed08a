"""The cluster tests' own infrastructure works: throwaway PostgreSQL servers
(tests/postgres.py) and HAProxy in front of real pushgw (tests/haproxy.py)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from postgres import child_processes, fail_over, process_start_time, start_standby
from servers import http_request


def run(coroutine):
    return asyncio.run(coroutine)


async def fetch(url: str, sql: str, **connect):
    connection = await asyncpg.connect(url, timeout=5, **connect)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


async def execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def test_server_is_loopback_only_durable_and_unprivileged(postgres_server, postgres_url):
    rows = run(fetch(postgres_url, "SELECT current_user, current_database(), "
                     "current_setting('listen_addresses') AS listen, current_setting('fsync') AS fsync, "
                     "current_setting('synchronous_commit') AS sync"))
    (row,) = rows
    assert row["current_user"] == postgres_server.app_user
    assert row["current_database"] in postgres_url
    assert (row["listen"], row["fsync"], row["sync"]) == ("127.0.0.1", "on", "on")
    assert postgres_url.startswith(f"postgresql://{postgres_server.app_user}@127.0.0.1:"
                                   f"{postgres_server.port}/")
    if os.geteuid() == 0:
        assert process_uid(postgres_server.pid) != 0, "PostgreSQL must not run as root"
    assert postgres_server.workdir.is_dir() and str(postgres_server.socket_dir).startswith(
        str(postgres_server.workdir))


def test_each_test_database_is_fresh_and_owned_by_the_app_user(postgres_server, postgres_url):
    run(execute(postgres_url, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"))
    other = postgres_server.create_database()
    try:
        assert other != postgres_url
        tables = run(fetch(other, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        assert tables == []
        owner = postgres_server.psql(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
            database=other.rpartition("/")[2].partition("?")[0])
        assert owner == postgres_server.app_user
    finally:
        postgres_server.drop_database(other.rpartition("/")[2].partition("?")[0])


def test_password_user_needs_its_password_from_env_or_passfile(postgres_server, postgres_url,
                                                               tmp_path, monkeypatch):
    for name in ("PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(name, raising=False)
    database = postgres_url.rpartition("/")[2].partition("?")[0]
    url = postgres_server.url_for(database, postgres_server.password_user)
    assert postgres_server.password not in url
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "absent"))
    with pytest.raises(asyncpg.InvalidPasswordError):
        run(fetch(url, "SELECT 1"))
    with pytest.raises(asyncpg.InvalidPasswordError):
        run(fetch(url, "SELECT 1", password="wrong"))
    monkeypatch.setenv("PGPASSFILE", str(postgres_server.write_passfile(tmp_path / "pgpass")))
    assert oct((tmp_path / "pgpass").stat().st_mode & 0o777) == "0o600"
    assert run(fetch(url, "SELECT current_user"))[0][0] == postgres_server.password_user
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "absent"))
    for name, value in postgres_server.password_env().items():
        monkeypatch.setenv(name, value)
    assert run(fetch(url, "SELECT current_user"))[0][0] == postgres_server.password_user


def test_terminate_connections_cuts_clients(postgres_server, postgres_url):
    async def scenario():
        connection = await asyncpg.connect(postgres_url, timeout=5)
        try:
            assert await connection.fetchval("SELECT 1") == 1
            database = postgres_url.rpartition("/")[2].partition("?")[0]
            assert postgres_server.terminate_connections(database) == 1
            with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                                ConnectionError)):
                await connection.fetchval("SELECT 1")
        finally:
            connection.terminate()

    run(scenario())


def test_restart_crash_and_kill_keep_committed_data_on_the_same_port(make_postgres):
    pg = make_postgres()
    url, port = pg.url, pg.port
    run(execute(url, "CREATE TABLE t (x int)"))
    for n, (how, restart) in enumerate([("stop", pg.stop), ("crash", pg.crash), ("kill", pg.kill)]):
        run(execute(url, f"INSERT INTO t VALUES ({n})"))  # committed (autocommit) before the fault
        old_pid, children = pg.pid, child_processes(pg.pid)
        assert children, "a running postmaster has children (checkpointer, ...)"
        restart()
        left = [pid for pid, started in children.items() if process_start_time(pid) == started]
        assert not left, f"{how}: the postmaster's children outlive it: {left}"
        assert not pg.alive()
        with pytest.raises((OSError, asyncpg.PostgresError)):
            run(fetch(url, "SELECT 1"))
        pg.start()
        assert pg.port == port and pg.pid != old_pid, how
        rows = run(fetch(url, "SELECT x FROM t ORDER BY x"))
        assert [r["x"] for r in rows] == list(range(n + 1)), f"after {how}:\n{pg.output()}"
    workdir = pg.workdir
    pg.close()
    assert not pg.alive() and not workdir.exists()


def test_fail_over_keeps_acknowledged_commits_behind_the_same_address(make_postgres):
    pg = make_postgres()
    run(execute(pg.url, "CREATE TABLE t (x int)"))
    standby = start_standby(pg)
    try:
        assert standby.port != pg.port
        run(execute(pg.url, "INSERT INTO t SELECT generate_series(1, 100)"))
        timeline = pg.psql("SELECT timeline_id FROM pg_control_checkpoint()")
        fail_over(pg, standby)
        assert not pg.alive() and standby.port == pg.port
        rows = run(fetch(pg.url, "SELECT count(*) AS n, pg_is_in_recovery() AS standby FROM t"))
        assert (rows[0]["n"], rows[0]["standby"]) == (100, False), standby.output()
        run(execute(pg.url, "INSERT INTO t VALUES (101)"))  # writable: no standby to wait for
        assert standby.psql("SELECT timeline_id FROM pg_control_checkpoint()") != timeline
    finally:
        standby.close()


def test_haproxy_spreads_requests_and_drops_a_killed_replica(make_pushgw, make_haproxy):
    replicas = [make_pushgw(), make_pushgw()]
    lb = make_haproxy([(gw.host, gw.port) for gw in replicas])
    lb.wait_states({"r0": "UP", "r1": "UP"})
    served = Counter()
    for _ in range(20):
        status, headers, _ = http_request("GET", lb.url + "/-/ready")
        assert status == 200
        served[headers["X-Pushgw-Backend"]] += 1
    assert served == {"r0": 10, "r1": 10}, "round robin over both replicas"

    replicas[1].proc.kill()  # kill -9, by its own pid
    replicas[1].wait(timeout=5)
    lb.wait_states({"r0": "UP", "r1": "DOWN"}, timeout=5)
    served.clear()
    for _ in range(20):
        status, headers, _ = http_request("GET", lb.url + "/-/ready")
        assert status == 200
        served[headers["X-Pushgw-Backend"]] += 1
    assert served == {"r0": 20}, "nothing is sent to the dead replica"


def test_haproxy_sends_nothing_to_replicas_failing_the_health_check(make_pushgw, make_haproxy):
    gw = make_pushgw()
    lb = make_haproxy([(gw.host, gw.port)], health_path="/-/no-such-check")
    lb.wait_states({"r0": "DOWN"}, timeout=5)
    status, _, _ = http_request("GET", lb.url + "/-/ready")
    assert status == 503, "a replica whose health check fails gets no requests"
