"""Shared fixtures: real pushgw / official Pushgateway processes on 127.0.0.1.

Session-scoped (shared, started with ``--web.enable-admin-api``):
    official          the official Pushgateway (skips, or fails under CI=true,
                      when the binary is missing)
    pushgw            pushgw
    clean_official    ``official`` after a wipe (function-scoped)
    clean_pushgw      ``pushgw`` after a wipe (function-scoped)

Function-scoped factories, for tests that need special flags; every server
they start is stopped when the test ends:
    make_pushgw(*args, env=None) -> ServerProcess   (env: extra variables)
    make_official(*args)          -> ServerProcess

A ``ServerProcess`` has ``url``, ``port``, ``pid``, ``output()``,
``stop() -> exit code``, ``alive()`` and ``wait(timeout)``.

PostgreSQL and HAProxy (tests/postgres.py, tests/haproxy.py; a missing one
skips, or fails under CI=true):
    postgres_server   one throwaway PostgreSQL for the session (PostgresServer)
    postgres_url      a fresh empty database on it, for one test (its URL)
    make_postgres()   -> PostgresServer of the test's own (to stop, crash, restart)
    make_haproxy([(host, port), ...], health_path="/-/ready") -> HAProxyServer
"""

from __future__ import annotations

import pytest

from servers import (  # noqa: F401  (re-exported for test modules)
    ServerProcess,
    free_port,
    official_binary,
    require_peer,
    start_official,
    start_pushgw,
    wipe_and_wait,
)
from postgres import PostgresServer, start_postgres  # noqa: F401
from haproxy import HAProxyServer, start_haproxy  # noqa: F401


@pytest.fixture(scope="session")
def official_bin() -> str:
    """Path of the official binary (skip, or fail under CI=true, if missing)."""
    return require_peer("prometheus-pushgateway", official_binary() or "/usr/bin/prometheus-pushgateway")


@pytest.fixture(scope="session")
def official(official_bin):
    server = start_official("--web.enable-admin-api")
    yield server
    server.close()


@pytest.fixture(scope="session")
def pushgw():
    server = start_pushgw("--web.enable-admin-api")
    yield server
    server.close()


@pytest.fixture
def clean_official(official):
    wipe_and_wait(official)
    return official


@pytest.fixture
def clean_pushgw(pushgw):
    wipe_and_wait(pushgw)
    return pushgw


class _Factory:
    def __init__(self, starter):
        self._starter = starter
        self.servers: list[ServerProcess] = []

    def __call__(self, *args, **kwargs) -> ServerProcess:
        server = self._starter(*args, **kwargs)
        self.servers.append(server)
        return server

    def close(self):
        for server in reversed(self.servers):
            server.close()


@pytest.fixture
def make_pushgw():
    """Factory: ``make_pushgw("--flag", env=None)`` starts a fresh pushgw."""
    factory = _Factory(start_pushgw)
    yield factory
    factory.close()


@pytest.fixture
def make_official(official_bin):
    """Factory: ``make_official("--flag")`` starts a fresh official gateway."""
    factory = _Factory(start_official)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """One PostgreSQL for the whole session; tests get their own database
    (``postgres_url``). A test that stops or crashes the server uses
    ``make_postgres`` instead."""
    server = start_postgres()
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """URL of a fresh empty database (owner ``postgres_server.app_user``),
    dropped after the test."""
    url = postgres_server.create_database()
    yield url
    name = url.rpartition("/")[2].partition("?")[0]
    try:
        postgres_server.drop_database(name)
    except RuntimeError:
        pass  # the session's server is deleted at the end anyway


@pytest.fixture
def make_postgres():
    """Factory: ``make_postgres()`` starts a PostgreSQL of the test's own."""
    factory = _Factory(start_postgres)
    yield factory
    factory.close()


@pytest.fixture
def make_haproxy():
    """Factory: ``make_haproxy([(host, port), ...])`` starts HAProxy in front of them."""
    factory = _Factory(start_haproxy)
    yield factory
    factory.close()
