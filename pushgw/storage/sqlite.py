"""The SQLite database that makes the store durable on one node (the default).

It holds the rows of pushgw/storage/rows.py: one per group and one per
stored family.

A file is used only if it is a pushgw database of a schema this version knows:
anything else (an official Pushgateway snapshot, a corrupt or newer database)
makes start-up fail, and the file is opened read-only until it has passed.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import aiosqlite

from pushgw.storage.engine import DatabaseError
from pushgw.storage.rows import FamilyRow, GroupRow, GroupWrite, added_inf_indices, statements

APPLICATION_ID = 0x70757367  # "pusg": marks a pushgw database
SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"

# MIGRATIONS[n] brings a database from schema n to n + 1.
MIGRATIONS: dict[int, str] = {
    0: """
        CREATE TABLE groups (
            grouping TEXT PRIMARY KEY,   -- canonical JSON of the sorted label pairs
            push_time REAL NOT NULL,
            failure_time REAL NOT NULL,
            ttl REAL NOT NULL,
            problem TEXT                 -- why quarantined families failed the check
        ) WITHOUT ROWID;
        CREATE TABLE families (
            grouping TEXT NOT NULL,
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            help TEXT NOT NULL,
            pushed_at REAL NOT NULL,
            lines BLOB NOT NULL,
            added_inf TEXT NOT NULL,      -- histogram metrics whose +Inf bucket was added
            quarantined INTEGER NOT NULL, -- pushed unchecked, failed the check, not exposed
            proto BLOB,                   -- protobuf-encoded metrics, for native histograms
            PRIMARY KEY (grouping, name)
        ) WITHOUT ROWID;
    """,
}


def check_file(path: str) -> None:
    """Refuse a file that is not a healthy pushgw database; never writes to it."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError as err:
        raise DatabaseError(f"cannot read persistence file {path}: {err}") from None
    if header != SQLITE_MAGIC:
        raise DatabaseError(
            f"persistence file {path} is not a pushgw database (not SQLite). If it is an official "
            f"Pushgateway persistence file, import it with `pushgw migrate --from {path} "
            "--to NEW.db` and start pushgw on NEW.db; else move it away or choose another file"
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        raise DatabaseError(f"persistence file {path} is corrupt: {err}") from None
    if app_id != APPLICATION_ID and not (app_id == 0 and tables == 0):
        raise DatabaseError(
            f"persistence file {path} is an SQLite database of another application "
            f"(application_id {app_id:#x}); pushgw will not touch it"
        )
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"persistence file {path} has schema version {version}, newer than this pushgw "
            f"understands ({SCHEMA_VERSION}); upgrade pushgw"
        )
    if check != "ok":
        raise DatabaseError(f"persistence file {path} is corrupt: {check}")


class DatabaseGone(Exception):
    """The file was removed or replaced while open: writes would go nowhere."""


class Database:
    """The open database; every method runs in aiosqlite's thread, off the event loop."""

    shared = False  # one node: nobody else writes to the file

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._identity = _identity(path)

    def check_identity(self) -> None:
        """SQLite keeps writing to a deleted file; notice it, or the data is lost at restart."""
        if _identity(self.path) != self._identity:
            raise DatabaseGone(f"persistence file {self.path} was removed or replaced")

    @classmethod
    async def open(cls, path: str) -> Database:
        """Open (creating or migrating) a database that passed :func:`check_file`."""
        conn = await aiosqlite.connect(path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the push is answered, power loss included.
        await conn.execute("PRAGMA synchronous=FULL")
        async with conn.execute("PRAGMA user_version") as cursor:
            (version,) = await cursor.fetchone()
        if version < SCHEMA_VERSION:
            await conn.execute("BEGIN IMMEDIATE")
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        await conn.execute(statement)
            await conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            await conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            await conn.execute("COMMIT")
        return cls(conn, path)

    async def load(self) -> list[GroupRow]:
        # fetchall: one hop to the database thread, not one per row.
        groups: dict[str, GroupRow] = {}
        for grouping, push_time, failure_time, ttl, problem in await self._conn.execute_fetchall(
            "SELECT grouping, push_time, failure_time, ttl, problem FROM groups"
        ):
            groups[grouping] = GroupRow(grouping, push_time, failure_time, ttl, problem, [])
        for grouping, name, type_, help_, pushed_at, lines, added_inf, bad, proto in (
            await self._conn.execute_fetchall(
                "SELECT grouping, name, type, help, pushed_at, lines, added_inf, quarantined, proto "
                "FROM families"
            )
        ):
            group = groups.get(grouping)
            if group is not None:
                group.families.append(FamilyRow(
                    name, type_, help_, pushed_at, bytes(lines), added_inf_indices(added_inf), bool(bad),
                    bytes(proto) if proto is not None else None,
                ))
        return list(groups.values())

    async def write(self, writes: Iterable[GroupWrite]) -> None:
        """Apply one batch in one transaction: all of it is durable, or none."""
        async with self.transaction() as tx:
            await tx.write(writes)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        """A write transaction, committed when the block ends without an error.

        One node holds the whole gateway: no other writer can have changed
        the database since it was loaded, so there is nothing to catch up on.
        """
        self.check_identity()
        conn = self._conn
        await conn.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTransaction(conn)
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise

    async def probe(self) -> None:
        """A tiny write transaction (rewrites the header page): does the disk take writes?"""
        async with self.transaction():
            await self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    async def close(self) -> None:
        await self._conn.close()


class SqliteTransaction:
    """Writes inside :meth:`Database.transaction`."""

    remote = None  # what other writers committed meanwhile: never anything here

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def write(self, writes: Iterable[GroupWrite]) -> None:
        batch = statements(writes)
        conn = self._conn
        whole = [(g,) for g in batch.whole]
        await conn.executemany("DELETE FROM families WHERE grouping = ?", whole)
        await conn.executemany("DELETE FROM groups WHERE grouping = ?", whole)
        await conn.executemany(
            "INSERT OR REPLACE INTO groups (grouping, push_time, failure_time, ttl, problem) "
            "VALUES (?, ?, ?, ?, ?)",
            batch.groups,
        )
        await conn.executemany("DELETE FROM families WHERE grouping = ? AND name = ?", batch.family_deletes)
        await conn.executemany(
            "INSERT OR REPLACE INTO families (grouping, name, type, help, pushed_at, "
            "lines, added_inf, quarantined, proto) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            batch.families,
        )


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
