"""``pushgw migrate --from SOURCE --to DB``: move a gateway's state into a pushgw database.

A source is opened by what its content is, not its name: an official
Pushgateway persistence file (a gob stream), a pushgw SQLite database, or a
pushgw PostgreSQL database (a postgresql:// URL). Each comes out as the
writes (one GroupWrite per group) that a pushgw database takes; the
destination, an SQLite file or a PostgreSQL URL, gets them in one
transaction (replicas running on it take them in as any other change). The source is read completely before the destination is
touched, so a truncated or corrupt source writes nothing; a new destination
is built under a temporary name and linked into place only when complete.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile

import aiosqlite

from pushgw.storage.engine import is_postgres_url
from pushgw.storage.family import TIME_NAMES, count_series
from pushgw.storage.official import OfficialFileError, read_official
from pushgw.storage.rows import GroupRow, GroupWrite, row_write
from pushgw.storage.sqlite import SQLITE_MAGIC, Database, DatabaseError, check_file


class MigrateError(Exception):
    """The migration cannot be done; nothing was written. The message says why."""


def source_kind(path: str) -> str:
    """``sqlite`` or ``official``, from the file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as err:
        raise MigrateError(f"cannot read {path}: {err.strerror or err}") from None
    if not head:
        raise MigrateError(f"{path} is empty: nothing to migrate")
    return "sqlite" if head == SQLITE_MAGIC else "official"


async def read_source(path: str) -> list[GroupWrite]:
    """Every group of the source, as writes for a pushgw database."""
    if is_postgres_url(path):
        from pushgw.storage.postgres import read_all

        return _writes(await read_all(path))
    if source_kind(path) == "sqlite":
        return await _read_pushgw(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise MigrateError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        return read_official(data)
    except OfficialFileError as err:
        raise MigrateError(f"{path}: {err}") from None


async def _read_pushgw(path: str) -> list[GroupWrite]:
    check_file(path)
    conn = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True)
    try:
        async with conn.execute("PRAGMA user_version") as cursor:
            (version,) = await cursor.fetchone()
        rows = await Database(conn, path).load() if version else []
    finally:
        await conn.close()
    return _writes(rows)


def _writes(rows: list[GroupRow]) -> list[GroupWrite]:
    return [row_write(row) for row in rows]


async def write_destination(path: str, writes: list[GroupWrite], replace: bool) -> None:
    """Write every group into ``path``: a new file, an empty database, or (``replace``) any."""
    if is_postgres_url(path):
        from pushgw.storage.postgres import PostgresDatabase

        db = await PostgresDatabase.open(path)
    elif not os.path.exists(path) or os.path.getsize(path) == 0:
        await _write_new(path, writes)
        return
    else:
        check_file(path)
        db = await Database.open(path)
    try:
        held = await db.load()
        if held and not replace:
            raise MigrateError(
                f"{path} already holds {len(held)} groups; give --replace to replace its content"
            )
        gone = [GroupWrite(row.grouping, None, {}, replace_all=True) for row in held]
        await db.write(gone + writes)  # one transaction: all of it, or nothing
    finally:
        await db.close()


async def _write_new(path: str, writes: list[GroupWrite]) -> None:
    """Build the database under a temporary name, then link it into place (never over a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".migrating.", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # as a file pushgw creates, not mkstemp's 0600
    try:
        db = await Database.open(temporary)
        try:
            await db.write(writes)
        finally:
            await db.close()
        if os.path.exists(path) and os.path.getsize(path) == 0:
            os.unlink(path)
        os.link(temporary, path)
    except FileExistsError:
        raise MigrateError(f"{path} appeared while migrating; nothing was written to it") from None
    finally:
        for leftover in (temporary, temporary + "-wal", temporary + "-shm"):
            if os.path.exists(leftover):
                os.unlink(leftover)


def series_total(writes: list[GroupWrite]) -> int:
    """Exposed series, the time gauges and quarantined families not counted."""
    return sum(
        count_series(f.name, f.type, f.lines)
        for w in writes for f in w.families.values()
        if f is not None and f.name not in TIME_NAMES and not f.quarantined
    )


async def migrate(source: str, destination: str, replace: bool) -> list[GroupWrite]:
    if source == destination or _same_file(source, destination):
        raise MigrateError("--from and --to are the same file")
    writes = await read_source(source)
    await write_destination(destination, writes, replace)
    return writes


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pushgw migrate",
        description="Copy every group (metrics, push times, last push success) from an official "
        "Pushgateway persistence file or a pushgw database (SQLite file or postgresql:// URL) "
        "into a pushgw database (SQLite file or postgresql:// URL). Stop the gateways using "
        "an SQLite or official file first; replicas on a PostgreSQL destination may keep running.",
    )
    p.add_argument("--from", dest="source", required=True, metavar="SRC",
                   help="source: an official --persistence.file, a pushgw SQLite file (told apart by "
                   "content) or a postgresql:// URL")
    p.add_argument("--to", dest="destination", required=True, metavar="DST",
                   help="destination: a pushgw SQLite file (created if missing) or a postgresql:// URL")
    p.add_argument("--replace", action="store_true",
                   help="replace the content of a destination that already holds groups")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        writes = asyncio.run(migrate(args.source, args.destination, args.replace))
    except (MigrateError, DatabaseError) as err:
        print(f"pushgw migrate: error: {err}; nothing was written", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as err:
        reason = getattr(err, "strerror", None) or err
        print(f"pushgw migrate: error: {args.destination}: {reason}; nothing was written", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - a damaged file must never end in a traceback
        print(f"pushgw migrate: error: {type(err).__name__}: {err}; nothing was written", file=sys.stderr)
        return 1
    print(
        f"migrated {len(writes)} groups ({series_total(writes)} series) "
        f"from {args.source} to {args.destination}"
    )
    return 0
