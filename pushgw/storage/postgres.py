"""The PostgreSQL database shared by the replicas of one gateway.

It holds the rows of pushgw/storage/rows.py, plus the change log that lets
replicas follow each other (see pushgw/storage/replication.py):

* ``pushgw_head`` has one row, the newest log position. Every write
  transaction starts by locking it, so transactions of all replicas commit
  one at a time, each after taking in the ones before it;
* ``pushgw_log`` has one entry per group changed, at consecutive positions;
  the transaction announces its new head with NOTIFY on commit.

asyncpg reads the standard PG* environment variables and the password file,
so the URL needs no password. A schema of our own is created on first start
and upgraded from older versions; a newer schema, or tables that are not
pushgw's in the same schema, refuse start-up and are left untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from pushgw.storage.engine import DatabaseError, RemoteChanges
from pushgw.storage.rows import FamilyRow, GroupRow, GroupWrite, added_inf_indices, statements

SCHEMA_VERSION = 1
CHANNEL = "pushgw_log"
LOCK_ID = 0x70757367  # advisory lock held while the schema is created or upgraded
LOG_KEEP = 100_000  # log entries kept; a replica further behind reloads everything
CONNECT_TIMEOUT = 5.0  # seconds
COMMAND_TIMEOUT = 30.0  # seconds; a statement past it fails its batch (503) instead of hanging
SESSION = {
    # A replica that vanished mid-transaction must not hold the cluster's lock.
    "idle_in_transaction_session_timeout": "15s",
    "application_name": "pushgw",
}

TABLES = ("pushgw_meta", "pushgw_head", "pushgw_groups", "pushgw_families", "pushgw_log")

# MIGRATIONS[n] brings a schema from version n to n + 1.
MIGRATIONS: dict[int, str] = {
    0: """
        CREATE TABLE pushgw_meta (key text PRIMARY KEY, value text NOT NULL);
        CREATE TABLE pushgw_head (id integer PRIMARY KEY CHECK (id = 1), position bigint NOT NULL);
        INSERT INTO pushgw_head VALUES (1, 0);
        CREATE TABLE pushgw_groups (
            grouping text PRIMARY KEY,   -- canonical JSON of the sorted label pairs
            push_time float8 NOT NULL,
            failure_time float8 NOT NULL,
            ttl float8 NOT NULL,
            problem text                 -- why quarantined families failed the check
        );
        CREATE TABLE pushgw_families (
            grouping text NOT NULL,
            name text NOT NULL,
            type text NOT NULL,
            help text NOT NULL,
            pushed_at float8 NOT NULL,
            lines bytea NOT NULL,
            added_inf text NOT NULL,      -- histogram metrics whose +Inf bucket was added
            quarantined boolean NOT NULL, -- pushed unchecked, failed the check, not exposed
            proto bytea,                  -- protobuf-encoded metrics, for native histograms
            PRIMARY KEY (grouping, name)
        );
        CREATE TABLE pushgw_log (
            position bigint PRIMARY KEY,
            grouping text NOT NULL,
            committed_at float8 NOT NULL  -- Unix time, for the replication lag
        );
    """,
}

# Errors that mean "the database is away", as opposed to a refusal of ours.
UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


class PostgresDatabase:
    """A pool of connections for transactions and reads, and one that listens."""

    shared = True  # every replica of the gateway writes to it

    def __init__(self, url: str) -> None:
        self.url = url
        self.position = 0  # the log position the local store holds
        self.reconnects = 0  # connections opened again after one was lost
        self.observe_roundtrip: Callable[[float], None] = lambda seconds: None
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._notified: asyncio.Queue[int] = asyncio.Queue()
        self._lost = 0  # connections lost and not yet opened again
        self._closing = False

    @classmethod
    async def open(cls, url: str) -> PostgresDatabase:
        """Check (creating or upgrading) the schema, then open the pool.

        Raises DatabaseError for a database pushgw must not touch, and one of
        UNAVAILABLE while it cannot be reached.
        """
        try:
            conn = await _connect(url)
        except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidCatalogNameError) as err:
            # Wrong credentials or no such database: waiting will not help.
            raise DatabaseError(f"cannot use the PostgreSQL database: {err}") from None
        try:
            await _prepare_schema(conn)
        finally:
            await conn.close()
        engine = cls(url)
        engine._pool = await asyncpg.create_pool(
            url, min_size=1, max_size=4, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT,
            server_settings=SESSION, max_inactive_connection_lifetime=0, init=engine._opened,
            reset=_keep_session,
        )
        return engine

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.terminate()
        self._pool.terminate()

    async def _opened(self, conn: asyncpg.Connection) -> None:
        if self._lost:
            self._lost -= 1
            self.reconnects += 1
        conn.add_termination_listener(self._closed)

    def _closed(self, conn: asyncpg.Connection) -> None:
        if not self._closing:
            self._lost += 1

    # --- reading ---------------------------------------------------------------

    async def load(self) -> list[GroupRow]:
        """The whole state, as of one log position (which becomes ours)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            head = await conn.fetchval("SELECT position FROM pushgw_head WHERE id = 1")
            groups = await _read_groups(conn, None)
        self.position = head
        return groups

    async def head(self) -> int:
        started = time.perf_counter()
        async with self._pool.acquire() as conn:
            head = await conn.fetchval("SELECT position FROM pushgw_head WHERE id = 1")
        self.observe_roundtrip(time.perf_counter() - started)
        return head

    async def changes_since(self, position: int) -> RemoteChanges:
        """What was committed after ``position``, as of one snapshot."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            head = await conn.fetchval("SELECT position FROM pushgw_head WHERE id = 1")
            return await _changes(conn, position, head)

    async def notified(self, timeout: float) -> int | None:
        """The next position announced by a commit (the newest of those pending), or None."""
        if self._listener is None or self._listener.is_closed():
            self._listener = await _connect(self.url)
            await self._opened(self._listener)
            await self._listener.add_listener(CHANNEL, self._on_notify)
            return None  # listening from now on; the caller catches up on what came before
        try:
            position = await asyncio.wait_for(self._notified.get(), timeout)
        except asyncio.TimeoutError:
            if self._listener.is_closed():
                raise ConnectionError("the listening connection to PostgreSQL was closed") from None
            return None
        while not self._notified.empty():
            position = max(position, self._notified.get_nowait())
        return position

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            self._notified.put_nowait(int(payload))
        except ValueError:
            pass  # not one of ours: positions are all we send

    # --- writing ---------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """A write transaction holding the cluster's lock, committed when the block ends.

        ``remote`` holds what others committed since our position; the
        caller takes it in before anything else (our position moves now).
        """
        async with self._pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                head = await conn.fetchval(
                    "UPDATE pushgw_head SET position = position WHERE id = 1 RETURNING position"
                )
                remote = await _changes(conn, self.position, head) if head != self.position else None
                self.position = head
                transaction = PostgresTransaction(conn, head, remote)
                yield transaction
                await tx.commit()
            except BaseException:
                await _rollback(conn, tx)
                raise
        self.position = transaction.position

    async def write(self, writes: Iterable[GroupWrite]) -> None:
        async with self.transaction() as tx:
            await tx.write(writes)

    async def probe(self) -> None:
        await self.head()


class PostgresTransaction:
    """Writes inside :meth:`PostgresDatabase.transaction`, and their log entries."""

    def __init__(self, conn: asyncpg.Connection, head: int, remote: RemoteChanges | None) -> None:
        self.remote = remote
        self.position = head  # the head after this transaction
        self._conn = conn

    async def write(self, writes: Iterable[GroupWrite]) -> None:
        writes = list(writes)
        if not writes:
            return
        batch = statements(writes)
        families = _columns(batch.families, 9)
        old = self.position
        # One statement, so the cluster's lock is held for one round trip of
        # writes. Its parts see one snapshot and must not touch a row twice:
        # the whole-group delete spares the families written again.
        self.position = await self._conn.fetchval(
            WRITE, batch.whole, batch.gone, *_columns(batch.groups, 5),
            *_columns(batch.family_deletes, 2), *families,
            [w.grouping for w in writes], time.time(), CHANNEL,
        )
        if self.position // 1000 != old // 1000:  # now and then: drop what no replica needs
            await self._conn.execute("DELETE FROM pushgw_log WHERE position <= $1", self.position - LOG_KEEP)


# A batch's writes, log entries, new head and notification ($1..$21).
WRITE = """
WITH whole AS (
    DELETE FROM pushgw_families f WHERE f.grouping = ANY($1::text[]) AND NOT EXISTS (
        SELECT 1 FROM unnest($10::text[], $11::text[]) AS w(grouping, name)
        WHERE w.grouping = f.grouping AND w.name = f.name)
), gone AS (
    DELETE FROM pushgw_groups WHERE grouping = ANY($2::text[])
), groups AS (
    INSERT INTO pushgw_groups (grouping, push_time, failure_time, ttl, problem)
    SELECT * FROM unnest($3::text[], $4::float8[], $5::float8[], $6::float8[], $7::text[])
    ON CONFLICT (grouping) DO UPDATE SET push_time = EXCLUDED.push_time,
        failure_time = EXCLUDED.failure_time, ttl = EXCLUDED.ttl, problem = EXCLUDED.problem
), family_deletes AS (
    DELETE FROM pushgw_families f USING unnest($8::text[], $9::text[]) AS d(grouping, name)
    WHERE f.grouping = d.grouping AND f.name = d.name
), families AS (
    INSERT INTO pushgw_families (grouping, name, type, help, pushed_at, lines, added_inf,
        quarantined, proto)
    SELECT * FROM unnest($10::text[], $11::text[], $12::text[], $13::text[], $14::float8[],
        $15::bytea[], $16::text[], $17::boolean[], $18::bytea[])
    ON CONFLICT (grouping, name) DO UPDATE SET type = EXCLUDED.type, help = EXCLUDED.help,
        pushed_at = EXCLUDED.pushed_at, lines = EXCLUDED.lines, added_inf = EXCLUDED.added_inf,
        quarantined = EXCLUDED.quarantined, proto = EXCLUDED.proto
), head AS (
    UPDATE pushgw_head SET position = position + cardinality($19::text[]) WHERE id = 1
    RETURNING position
), entries AS (
    INSERT INTO pushgw_log (position, grouping, committed_at)
    SELECT head.position - cardinality($19::text[]) + e.n, e.grouping, $20
    FROM head, unnest($19::text[]) WITH ORDINALITY AS e(grouping, n)
)
SELECT position, pg_notify($21, position::text) FROM head
"""


# --- helpers -----------------------------------------------------------------------


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        url, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT, server_settings=SESSION
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection back in the pool keeps its session as it is.

    asyncpg's default reset (unlock, close cursors, unlisten, reset
    settings) is one more round trip for every transaction and every read's
    head query; the pool's connections never change their session.
    """


async def _rollback(conn: asyncpg.Connection, tx: Any) -> None:
    """Roll back; a connection that cannot even do that is dropped from the pool."""
    try:
        await asyncio.wait_for(tx.rollback(), CONNECT_TIMEOUT)
    except Exception:  # noqa: BLE001 - the connection is unusable either way
        conn.terminate()


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows to one list per column, for unnest()."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


async def _changes(conn: asyncpg.Connection, position: int, head: int) -> RemoteChanges:
    """The changes after ``position`` up to ``head``, read in ``conn``'s snapshot or lock."""
    if head == position:
        return RemoteChanges(head)
    entries = await conn.fetch(
        "SELECT grouping, max(committed_at) AS at, min(min(position)) OVER () AS first "
        "FROM pushgw_log WHERE position > $1 GROUP BY grouping",
        position,
    )
    if head < position or not entries or entries[0]["first"] != position + 1:
        # Fell out of the log (or the database went back in time): reload.
        return RemoteChanges(head, await _read_groups(conn, None), everything=True)
    changed = [e["grouping"] for e in entries]
    groups = await _read_groups(conn, changed)
    present = {g.grouping for g in groups}
    return RemoteChanges(
        head, groups, [g for g in changed if g not in present],
        committed_at=max(e["at"] for e in entries) if entries else None,
    )


async def _read_groups(conn: asyncpg.Connection, groupings: list[str] | None) -> list[GroupRow]:
    """The rows of ``groupings`` (None: of every group)."""
    where, args = ("", ()) if groupings is None else (" WHERE grouping = ANY($1::text[])", (groupings,))
    groups: dict[str, GroupRow] = {}
    for grouping, push_time, failure_time, ttl, problem in await conn.fetch(
        "SELECT grouping, push_time, failure_time, ttl, problem FROM pushgw_groups" + where, *args
    ):
        groups[grouping] = GroupRow(grouping, push_time, failure_time, ttl, problem, [])
    for grouping, name, type_, help_, pushed_at, lines, added_inf, bad, proto in await conn.fetch(
        "SELECT grouping, name, type, help, pushed_at, lines, added_inf, quarantined, proto "
        "FROM pushgw_families" + where, *args
    ):
        group = groups.get(grouping)
        if group is not None:
            group.families.append(FamilyRow(name, type_, help_, pushed_at, lines,
                                            added_inf_indices(added_inf), bad, proto))
    return list(groups.values())


async def _prepare_schema(conn: asyncpg.Connection) -> None:
    """Create or upgrade our tables; refuse a schema that is not ours or is newer."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_ID)  # replicas starting at once
        schema = await conn.fetchval("SELECT current_schema()")
        if schema is None:
            raise DatabaseError("the PostgreSQL database has no schema to create tables in (search_path)")
        tables = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
        )}
        foreign = sorted(tables - set(TABLES))
        if foreign:
            raise DatabaseError(
                f"PostgreSQL schema {schema!r} holds tables that are not pushgw's ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); pushgw will not touch it: give it a database "
                "(or a schema, through search_path) of its own"
            )
        version = 0
        if tables:
            if "pushgw_meta" not in tables:
                raise DatabaseError(f"PostgreSQL schema {schema!r} holds an incomplete pushgw schema; "
                                    "pushgw will not touch it")
            value = await conn.fetchval("SELECT value FROM pushgw_meta WHERE key = 'schema_version'")
            version = int(value or 0)
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"the PostgreSQL database has pushgw schema version {version}, newer than this "
                f"pushgw understands ({SCHEMA_VERSION}); upgrade pushgw"
            )
        for step in range(version, SCHEMA_VERSION):
            await conn.execute(MIGRATIONS[step])
        if version < SCHEMA_VERSION:
            await conn.execute(
                "INSERT INTO pushgw_meta VALUES ('schema_version', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                str(SCHEMA_VERSION),
            )
