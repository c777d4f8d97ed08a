"""The PostgreSQL database shared by the replicas of one gateway.

It holds the rows of pushgw/storage/rows.py, plus the change log that lets
replicas follow each other (see pushgw/storage/replication.py):

* ``pushgw_head`` has one row, the newest log position;
* ``pushgw_log`` has one entry per transaction, at consecutive positions:
  the group writes it made (pushgw/storage/changelog.py). A commit after a
  quiet spell (QUIET) announces its position with NOTIFY; followers look
  at the log often while commits keep coming (pushgw/storage/replication.py);
* ``pushgw_groups`` and ``pushgw_families`` hold the whole state as of the
  log position in ``pushgw_checkpoint``, which one replica moves forward
  every few seconds (pushgw/storage/checkpoint.py). The whole state is
  those rows plus the log entries after them, which are all kept.

Writers of all replicas take turns under one lock, each after taking in
what the ones before it committed. A turn writes only its log entry, and
two functions of the schema make it two round trips, so that the lock is
held for as little as possible:

* ``pushgw_begin`` takes the lock (a session advisory lock), waits until
  the previous holder's commit is visible, and returns the log entries
  after the caller's position;
* ``pushgw_commit`` appends the log entry and hands the lock on; the next
  writer waits only for this commit to be visible (an advisory lock held to
  the end of the transaction), not for our replica to send a COMMIT. A
  writer that fails in between drops its connection, and the lock with it;
  one that stalls is cut off by the server (``idle_session_timeout``,
  PostgreSQL 14 and later).

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
from operator import itemgetter
from typing import Any

import asyncpg

from pushgw.storage import changelog
from pushgw.storage.checkpoint import ChangedGroups
from pushgw.storage.engine import DatabaseError, RemoteChanges
from pushgw.storage.rows import (
    FamilyRow, GroupRow, GroupWrite, added_inf_indices, apply_writes, row_write, statements,
)

SCHEMA_VERSION = 3
CHANNEL = "pushgw_log"
LOCK_ID = 0x70757367  # advisory lock held while the schema is created or upgraded
LOG_KEEP = 100_000  # log entries (transactions) kept before the checkpoint; a replica further behind reloads
QUIET = 0.05  # seconds: a commit this long after the previous one is announced (NOTIFY)
LOCK_TIMEOUT = "15s"  # a replica holding the writers' lock this long without a word is cut off
CONNECT_TIMEOUT = 5.0  # seconds
COMMAND_TIMEOUT = 30.0  # seconds; a statement past it fails its batch (503) instead of hanging
SESSION = {
    # A replica that vanished mid-transaction must not hold the cluster's lock.
    "idle_in_transaction_session_timeout": "15s",
    "application_name": "pushgw",
}

TABLES = ("pushgw_meta", "pushgw_head", "pushgw_groups", "pushgw_families", "pushgw_log", "pushgw_checkpoint")

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
    1: """
        DROP TABLE pushgw_log;
        CREATE TABLE pushgw_log (
            position bigint PRIMARY KEY,
            committed_at float8 NOT NULL, -- Unix time, for the replication lag
            changes bytea NOT NULL        -- pushgw/storage/changelog.py; empty: reload everything
        );
        -- Entries are read a few times and soon dropped: not worth compressing.
        ALTER TABLE pushgw_log ALTER COLUMN changes SET STORAGE EXTERNAL;

        -- Advisory lock keys, with the head table's oid (one gateway per schema):
        -- 1886745345, the writers' lock, held by a session from pushgw_begin to
        -- pushgw_commit; 1886745346, held by pushgw_commit until its commit is visible.

        -- The writers' lock (until pushgw_commit), once the previous holder's
        -- commit is visible; the head, then the log entries after _after.
        CREATE FUNCTION pushgw_begin(_after bigint, _timeout text)
        RETURNS TABLE (log_position bigint, log_committed_at float8, log_changes bytea)
        LANGUAGE plpgsql AS $$
        DECLARE
            _key int := 'pushgw_head'::regclass::oid::int;
        BEGIN
            PERFORM pg_advisory_lock(1886745345, _key);
            PERFORM pg_advisory_xact_lock_shared(1886745346, _key);
            IF current_setting('server_version_num')::int >= 140000 THEN
                PERFORM set_config('idle_session_timeout', _timeout, false);
            END IF;
            RETURN QUERY SELECT h.position, NULL::float8, NULL::bytea FROM pushgw_head h WHERE h.id = 1;
            RETURN QUERY SELECT l.position, l.committed_at, l.changes FROM pushgw_log l
                WHERE l.position > _after ORDER BY l.position;
        END $$;

        -- A batch's rows and its log entry (none if _changes is NULL), then the
        -- lock goes to the next writer, who waits until this commit is visible.
        CREATE FUNCTION pushgw_commit(
            _whole text[], _gone text[],
            _g_grouping text[], _g_push float8[], _g_failure float8[], _g_ttl float8[], _g_problem text[],
            _d_grouping text[], _d_name text[],
            _f_grouping text[], _f_name text[], _f_type text[], _f_help text[], _f_pushed float8[],
            _f_lines bytea[], _f_added text[], _f_quarantined boolean[], _f_proto bytea[],
            _changes bytea, _committed_at float8, _keep bigint, _channel text
        ) RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE
            _key int := 'pushgw_head'::regclass::oid::int;
            _head bigint;
        BEGIN
            PERFORM pg_advisory_xact_lock(1886745346, _key);
            IF _changes IS NULL THEN
                SELECT h.position INTO _head FROM pushgw_head h WHERE h.id = 1;
            ELSE
                -- Statements with nothing to do are skipped: each costs an executor start.
                -- Families that stay are updated in place below, not deleted first.
                IF cardinality(_whole) > 0 THEN
                    DELETE FROM pushgw_families f WHERE f.grouping = ANY(_whole) AND NOT EXISTS (
                        SELECT 1 FROM unnest(_f_grouping, _f_name) AS w(grouping, name)
                        WHERE w.grouping = f.grouping AND w.name = f.name);
                END IF;
                IF cardinality(_gone) > 0 THEN
                    DELETE FROM pushgw_groups g WHERE g.grouping = ANY(_gone);
                END IF;
                INSERT INTO pushgw_groups (grouping, push_time, failure_time, ttl, problem)
                    SELECT * FROM unnest(_g_grouping, _g_push, _g_failure, _g_ttl, _g_problem)
                    ON CONFLICT (grouping) DO UPDATE SET push_time = EXCLUDED.push_time,
                        failure_time = EXCLUDED.failure_time, ttl = EXCLUDED.ttl, problem = EXCLUDED.problem;
                IF cardinality(_d_grouping) > 0 THEN
                    DELETE FROM pushgw_families f USING unnest(_d_grouping, _d_name) AS d(grouping, name)
                        WHERE f.grouping = d.grouping AND f.name = d.name;
                END IF;
                INSERT INTO pushgw_families (grouping, name, type, help, pushed_at, lines, added_inf,
                        quarantined, proto)
                    SELECT * FROM unnest(_f_grouping, _f_name, _f_type, _f_help, _f_pushed, _f_lines,
                        _f_added, _f_quarantined, _f_proto)
                    ON CONFLICT (grouping, name) DO UPDATE SET type = EXCLUDED.type, help = EXCLUDED.help,
                        pushed_at = EXCLUDED.pushed_at, lines = EXCLUDED.lines,
                        added_inf = EXCLUDED.added_inf, quarantined = EXCLUDED.quarantined,
                        proto = EXCLUDED.proto;
                UPDATE pushgw_head h SET position = h.position + 1 WHERE h.id = 1 RETURNING h.position INTO _head;
                INSERT INTO pushgw_log (position, committed_at, changes) VALUES (_head, _committed_at, _changes);
                IF _head % 1000 = 0 THEN  -- now and then: drop what no replica needs
                    DELETE FROM pushgw_log l WHERE l.position <= _head - _keep;
                END IF;
                PERFORM pg_notify(_channel, _head::text);
            END IF;
            IF current_setting('server_version_num')::int >= 140000 THEN
                PERFORM set_config('idle_session_timeout', '0', false);
            END IF;
            IF NOT pg_advisory_unlock(1886745345, _key) THEN
                RAISE EXCEPTION 'pushgw: this session does not hold the writers'' lock';
            END IF;
            RETURN _head;
        END $$;
    """,
    2: """
        -- A turn writes only its log entry; the tables hold the state as of
        -- pushgw_checkpoint.position, moved forward by one replica at a time.
        CREATE TABLE pushgw_checkpoint (id integer PRIMARY KEY CHECK (id = 1), position bigint NOT NULL);
        INSERT INTO pushgw_checkpoint SELECT 1, h.position FROM pushgw_head h;
        ALTER TABLE pushgw_head ADD COLUMN committed_at timestamptz NOT NULL DEFAULT '-infinity';
        DROP FUNCTION pushgw_begin(bigint, text);
        DROP FUNCTION pushgw_commit(text[], text[], text[], float8[], float8[], float8[], text[], text[],
            text[], text[], text[], text[], text[], float8[], bytea[], text[], boolean[], bytea[], bytea,
            float8, bigint, text);

        -- Advisory lock keys, with the head table's oid (one gateway per schema):
        -- 1886745345, the writers' lock, held by a session from pushgw_begin to
        -- pushgw_commit; 1886745346, held by pushgw_commit until its commit is
        -- visible; 1886745347, the checkpointer's, held by one replica's session.

        -- The writers' lock (until pushgw_commit), once the previous holder's
        -- commit is visible; the head (with the checkpoint position), then the
        -- log entries after _after.
        CREATE FUNCTION pushgw_begin(_after bigint, _timeout text)
        RETURNS TABLE (log_position bigint, log_committed_at float8, log_changes bytea, checkpoint bigint)
        LANGUAGE plpgsql AS $$
        DECLARE
            _key int := 'pushgw_head'::regclass::oid::int;
        BEGIN
            PERFORM pg_advisory_lock(1886745345, _key);
            PERFORM pg_advisory_xact_lock_shared(1886745346, _key);
            IF current_setting('server_version_num')::int >= 140000 THEN
                PERFORM set_config('idle_session_timeout', _timeout, false);
            END IF;
            RETURN QUERY SELECT h.position, NULL::float8, NULL::bytea, c.position
                FROM pushgw_head h, pushgw_checkpoint c;
            RETURN QUERY SELECT l.position, l.committed_at, l.changes, NULL::bigint FROM pushgw_log l
                WHERE l.position > _after ORDER BY l.position;
        END $$;

        -- A batch's log entry (none if _changes is NULL), then the lock goes
        -- to the next writer, who waits until this commit is visible. Only a
        -- commit _quiet seconds after the previous one is announced: waking
        -- every listener at each commit would cost more than the followers'
        -- looks at the log while commits keep coming.
        CREATE FUNCTION pushgw_commit(_changes bytea, _committed_at float8, _keep bigint, _channel text,
            _quiet float8)
        RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE
            _key int := 'pushgw_head'::regclass::oid::int;
            _head bigint;
            _previous timestamptz;
        BEGIN
            PERFORM pg_advisory_xact_lock(1886745346, _key);
            IF _changes IS NULL THEN
                SELECT h.position INTO _head FROM pushgw_head h WHERE h.id = 1;
            ELSE
                SELECT h.committed_at INTO _previous FROM pushgw_head h WHERE h.id = 1;
                UPDATE pushgw_head h SET position = h.position + 1, committed_at = clock_timestamp()
                    WHERE h.id = 1 RETURNING h.position INTO _head;
                INSERT INTO pushgw_log (position, committed_at, changes) VALUES (_head, _committed_at, _changes);
                IF _head % 1000 = 0 THEN  -- now and then: drop what neither a replica nor the tables need
                    DELETE FROM pushgw_log l WHERE l.position <= LEAST(_head - _keep,
                        (SELECT c.position FROM pushgw_checkpoint c WHERE c.id = 1));
                END IF;
                IF _previous < clock_timestamp() - make_interval(secs => _quiet) THEN
                    PERFORM pg_notify(_channel, _head::text);
                END IF;
            END IF;
            IF current_setting('server_version_num')::int >= 140000 THEN
                PERFORM set_config('idle_session_timeout', '0', false);
            END IF;
            IF NOT pg_advisory_unlock(1886745345, _key) THEN
                RAISE EXCEPTION 'pushgw: this session does not hold the writers'' lock';
            END IF;
            RETURN _head;
        END $$;

        -- Whole groups as of log position _position (_gone: deleted ones), and
        -- the checkpoint moves there; unless it already is there or further.
        -- Returns the checkpoint position.
        CREATE FUNCTION pushgw_write_checkpoint(
            _position bigint, _whole text[], _gone text[],
            _g_grouping text[], _g_push float8[], _g_failure float8[], _g_ttl float8[], _g_problem text[],
            _f_grouping text[], _f_name text[], _f_type text[], _f_help text[], _f_pushed float8[],
            _f_lines bytea[], _f_added text[], _f_quarantined boolean[], _f_proto bytea[]
        ) RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE
            _at bigint;
        BEGIN
            SELECT c.position INTO _at FROM pushgw_checkpoint c WHERE c.id = 1 FOR UPDATE;
            IF _at >= _position THEN
                RETURN _at;
            END IF;
            -- Families that stay are updated in place below, not deleted first.
            IF cardinality(_whole) > 0 THEN
                DELETE FROM pushgw_families f WHERE f.grouping = ANY(_whole) AND NOT EXISTS (
                    SELECT 1 FROM unnest(_f_grouping, _f_name) AS w(grouping, name)
                    WHERE w.grouping = f.grouping AND w.name = f.name);
            END IF;
            IF cardinality(_gone) > 0 THEN
                DELETE FROM pushgw_groups g WHERE g.grouping = ANY(_gone);
            END IF;
            INSERT INTO pushgw_groups (grouping, push_time, failure_time, ttl, problem)
                SELECT * FROM unnest(_g_grouping, _g_push, _g_failure, _g_ttl, _g_problem)
                ON CONFLICT (grouping) DO UPDATE SET push_time = EXCLUDED.push_time,
                    failure_time = EXCLUDED.failure_time, ttl = EXCLUDED.ttl, problem = EXCLUDED.problem;
            INSERT INTO pushgw_families (grouping, name, type, help, pushed_at, lines, added_inf,
                    quarantined, proto)
                SELECT * FROM unnest(_f_grouping, _f_name, _f_type, _f_help, _f_pushed, _f_lines,
                    _f_added, _f_quarantined, _f_proto)
                ON CONFLICT (grouping, name) DO UPDATE SET type = EXCLUDED.type, help = EXCLUDED.help,
                    pushed_at = EXCLUDED.pushed_at, lines = EXCLUDED.lines,
                    added_inf = EXCLUDED.added_inf, quarantined = EXCLUDED.quarantined,
                    proto = EXCLUDED.proto;
            UPDATE pushgw_checkpoint c SET position = _position WHERE c.id = 1;
            RETURN _position;
        END $$;
    """,
}

# Errors that mean "the database is away", as opposed to a refusal of ours.
UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


class PostgresDatabase:
    """A pool of connections for transactions and reads, one that listens, and
    one that holds the checkpointer's lock if this replica has it."""

    shared = True  # every replica of the gateway writes to it

    def __init__(self, url: str) -> None:
        self.url = url
        self.position = 0  # the log position the local store holds
        self.changed = ChangedGroups()  # for the next checkpoint
        self.reconnects = 0  # connections opened again after one was lost
        self.observe_roundtrip: Callable[[float], None] = lambda seconds: None
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._notified: asyncio.Queue[int] = asyncio.Queue()
        self._checkpointer: asyncpg.Connection | None = None  # holding the lock if _checkpointing
        self._checkpointing = False
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
        except asyncpg.InsufficientPrivilegeError as err:
            # Not allowed to create or upgrade the schema: waiting will not help either.
            raise DatabaseError(f"cannot use the PostgreSQL database: {err}") from None
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
        for conn in (self._listener, self._checkpointer):
            if conn is not None:
                conn.terminate()
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
        async with self._pool.acquire() as conn:
            self.position, groups = await self._read_state(conn)
        return groups

    async def head(self) -> int:
        started = time.perf_counter()
        async with self._pool.acquire() as conn:
            head = await conn.fetchval("SELECT position FROM pushgw_head WHERE id = 1")
        self.observe_roundtrip(time.perf_counter() - started)
        return head

    async def changes_since(self, position: int) -> RemoteChanges:
        """What was committed after ``position``, as of one snapshot."""
        async with self._pool.acquire() as conn:
            remote = self._follow(position, await conn.fetch(FOLLOW, position))
            if remote is None:  # fell out of the log
                head, groups = await self._read_state(conn)
                remote = RemoteChanges(head, reload=groups)
        return remote

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

    def _follow(self, position: int, rows: list) -> RemoteChanges | None:
        """The changes after ``position`` from head and log rows (FOLLOW, pushgw_begin),
        noted for the next checkpoint; None when the log no longer holds them all."""
        head, _, _, checkpoint = _head_row(rows)
        self.changed.checkpointed(checkpoint)
        remote = _remote(position, head, rows)
        if remote is not None:
            for at, writes in enumerate(remote.entries, start=position + 1):
                self.changed.add(at, writes)
        return remote

    async def _read_state(self, conn: asyncpg.Connection) -> tuple[int, list[GroupRow]]:
        """The whole state and its log position: the checkpoint's rows, brought
        forward by the log entries after it, all in one snapshot."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            head, checkpoint, groups, entries = await _state_at_head(conn)
        self.changed.reset(checkpoint)
        for at, writes in entries:
            self.changed.add(at, writes)
        return head, list(groups.values())

    # --- writing ---------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """A turn holding the writers' lock; ``write`` commits and ends it.

        ``remote`` holds what others committed since our position; the
        caller takes it in before anything else (our position moves now).
        """
        async with self._pool.acquire() as conn:
            try:
                rows = await conn.fetch("SELECT * FROM pushgw_begin($1, $2)", self.position, LOCK_TIMEOUT)
                remote = self._follow(self.position, rows)
                if remote is None:  # fell out of the log; nobody writes while we hold the lock
                    head, groups = await self._read_state(conn)
                    remote = RemoteChanges(head, reload=groups)
                self.position = remote.position
                transaction = PostgresTransaction(conn, self.changed, remote.position,
                                                  remote if remote.entries or remote.reload is not None else None)
                yield transaction
                if not transaction.committed:
                    await transaction.write([])  # hands the lock on
            except BaseException:
                conn.terminate()  # the session ends, and the writers' lock with it
                raise
        self.position = transaction.position

    async def write(self, writes: Iterable[GroupWrite]) -> None:
        """One batch (``pushgw migrate``) on top of the whole state, written out as a new
        checkpoint; replicas running on the database reload."""
        async with self.transaction() as tx:
            await tx.write_whole(writes)

    async def probe(self) -> None:
        await self.head()

    # --- checkpoints -------------------------------------------------------------

    async def is_checkpointer(self) -> bool:
        """Whether this replica holds the checkpointer's lock: the first to ask has it
        for as long as its session lives, then the next to ask."""
        if self._checkpointer is None or self._checkpointer.is_closed():
            self._checkpointing = False
            self._checkpointer = await _connect(self.url)
            await self._opened(self._checkpointer)
        if not self._checkpointing:
            self._checkpointing = await self._checkpointer.fetchval(
                "SELECT pg_try_advisory_lock(1886745347, 'pushgw_head'::regclass::oid::int)")
        return self._checkpointing

    async def checkpoint(self, position: int, writes: list[GroupWrite]) -> None:
        """The groups changed since the last checkpoint, whole as of ``position``."""
        async with self._pool.acquire() as conn:
            self.changed.checkpointed(await conn.fetchval(WRITE_CHECKPOINT, position, *_whole_columns(writes)))


class PostgresTransaction:
    """A writer's turn in :meth:`PostgresDatabase.transaction`."""

    def __init__(self, conn: asyncpg.Connection, changed: ChangedGroups, head: int,
                 remote: RemoteChanges | None) -> None:
        self.remote = remote
        self.position = head  # the head after this transaction
        self.committed = False
        self._conn = conn
        self._changed = changed

    async def write(self, writes: Iterable[GroupWrite]) -> None:
        """Append the log entry and commit, in one round trip."""
        assert not self.committed, "one write per transaction"
        writes = list(writes)
        entry = changelog.encode(writes) if writes else None
        self.position = await self._conn.fetchval(COMMIT, entry, time.time(), LOG_KEEP, CHANNEL, QUIET)
        self.committed = True
        if writes:
            self._changed.add(self.position, writes)

    async def write_whole(self, writes: Iterable[GroupWrite]) -> None:
        """Apply writes to the whole state and store the result as a checkpoint at a new
        position, whose log entry tells the replicas to reload."""
        assert not self.committed, "one write per transaction"
        conn = self._conn
        async with conn.transaction(isolation="repeatable_read"):
            # Before the snapshot is taken: a checkpoint being written is waited for.
            await conn.execute("LOCK TABLE pushgw_checkpoint IN EXCLUSIVE MODE")
            _, _, groups, _ = await _state_at_head(conn)
            apply_writes(groups, writes)
            await conn.execute("DELETE FROM pushgw_families; DELETE FROM pushgw_groups")
            self.position = await conn.fetchval(COMMIT, changelog.RELOAD, time.time(), LOG_KEEP, CHANNEL, 0.0)
            await conn.fetchval(WRITE_CHECKPOINT, self.position,
                                *_whole_columns([row_write(row) for row in groups.values()]))
        self.committed = True
        self._changed.reset(self.position)


COMMIT = "SELECT pushgw_commit($1, $2, $3, $4, $5)"
WRITE_CHECKPOINT = "SELECT pushgw_write_checkpoint(" + ", ".join(f"${i}" for i in range(1, 18)) + ")"

# The head (no changes) with the checkpoint, and the log entries after $1, in
# one snapshot (a follower's read).
FOLLOW = """
SELECT h.position, NULL::float8, NULL::bytea, c.position FROM pushgw_head h, pushgw_checkpoint c
UNION ALL
(SELECT l.position, l.committed_at, l.changes, NULL::bigint FROM pushgw_log l WHERE l.position > $1
 ORDER BY l.position)
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


def _whole_columns(writes: list[GroupWrite]) -> list[list]:
    """Whole-group writes as pushgw_write_checkpoint's arrays, one per column."""
    batch = statements(writes)
    assert not batch.family_deletes, "a checkpoint writes whole groups"
    return [batch.whole, batch.gone, *_columns(batch.groups, 5), *_columns(batch.families, 9)]


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows to one list per column, for unnest()."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


def _head_row(rows: list) -> tuple:
    """The head's row among log rows: the one without changes (head, -, -, checkpoint)."""
    return next(row for row in rows if row[2] is None)


def _remote(position: int, head: int, rows: list) -> RemoteChanges | None:
    """The changes from ``position`` to ``head`` among log rows; None when the log
    no longer holds them all (or the database went back in time)."""
    entries = sorted((row for row in rows if row[2] is not None), key=itemgetter(0))
    if head == position:
        return RemoteChanges(head)
    if head < position or len(entries) != head - position or entries[0][0] != position + 1:
        return None
    if any(row[2] == changelog.RELOAD for row in entries):
        return None
    return RemoteChanges(head, [changelog.decode(row[2]) for row in entries], committed_at=entries[-1][1])


async def _state_at_head(
    conn: asyncpg.Connection,
) -> tuple[int, int, dict[str, GroupRow], list[tuple[int, list[GroupWrite]]]]:
    """Head, checkpoint, the whole state at the head (by grouping), and the log entries
    it took in; the caller's transaction makes it one snapshot."""
    head, checkpoint = await conn.fetchrow(
        "SELECT h.position, c.position FROM pushgw_head h, pushgw_checkpoint c")
    groups = {row.grouping: row for row in await _read_groups(conn)}
    entries = []
    for at, changes in await conn.fetch(
        "SELECT position, changes FROM pushgw_log WHERE position > $1 ORDER BY position", checkpoint
    ):
        if changes == changelog.RELOAD or at != checkpoint + len(entries) + 1:
            raise DatabaseError(f"the change log after the checkpoint ({checkpoint}) is broken at {at}")
        writes = changelog.decode(changes)
        apply_writes(groups, writes)
        entries.append((at, writes))
    if checkpoint + len(entries) != head:
        raise DatabaseError(f"the change log after the checkpoint ({checkpoint}) ends before the head ({head})")
    return head, checkpoint, groups, entries


async def _read_groups(conn: asyncpg.Connection) -> list[GroupRow]:
    """The rows of every group (as of the checkpoint)."""
    groups: dict[str, GroupRow] = {}
    for grouping, push_time, failure_time, ttl, problem in await conn.fetch(
        "SELECT grouping, push_time, failure_time, ttl, problem FROM pushgw_groups"
    ):
        groups[grouping] = GroupRow(grouping, push_time, failure_time, ttl, problem, [])
    for grouping, name, type_, help_, pushed_at, lines, added_inf, bad, proto in await conn.fetch(
        "SELECT grouping, name, type, help, pushed_at, lines, added_inf, quarantined, proto FROM pushgw_families"
    ):
        group = groups.get(grouping)
        if group is not None:
            group.families.append(FamilyRow(name, type_, help_, pushed_at, lines,
                                            added_inf_indices(added_inf), bad, proto))
    return list(groups.values())


async def read_all(url: str) -> list[GroupRow]:
    """The whole state, for ``pushgw migrate --from``: the database is only read (no
    schema is created or upgraded; a database without one holds nothing)."""
    conn = await _connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            version = await _schema_version(conn)
            if version == 0:
                return []
            if version < SCHEMA_VERSION:
                raise DatabaseError(
                    f"the PostgreSQL database has the older pushgw schema version {version}; start "
                    "a replica of this pushgw on it once (it upgrades the schema), then migrate"
                )
            _, _, groups, _ = await _state_at_head(conn)
        return list(groups.values())
    finally:
        await conn.close()


async def _schema_version(conn: asyncpg.Connection) -> int:
    """Our schema's version, 0 for none; refuse a schema that is not ours or is newer."""
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
    return version


async def _prepare_schema(conn: asyncpg.Connection) -> None:
    """Create or upgrade our tables; refuse a schema that is not ours or is newer."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_ID)  # replicas starting at once
        version = await _schema_version(conn)
        for step in range(version, SCHEMA_VERSION):
            await conn.execute(MIGRATIONS[step])
        if version < SCHEMA_VERSION:
            await conn.execute(
                "INSERT INTO pushgw_meta VALUES ('schema_version', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                str(SCHEMA_VERSION),
            )
