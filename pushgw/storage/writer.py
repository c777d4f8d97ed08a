"""Group commit: store changes become durable in shared SQLite transactions.

A change is applied to the in-memory store first (so the next push is checked
against it), then queued here; its HTTP answer waits until the transaction
holding it has committed. While one transaction is being written, new changes
queue up and go together in the next one, so concurrent pushes share an fsync.
If a transaction fails, every change not yet durable is undone in memory,
newest first, and its request gets an error: memory never holds what the
database could not take.
"""

from __future__ import annotations

import asyncio
import logging
import os

import orjson

from pushgw.grouping import GroupKey
from pushgw.storage.sqlite import Database, DatabaseGone, FamilyRow, GroupWrite
from pushgw.storage.store import Change, MetricStore

log = logging.getLogger("pushgw.persistence")


class PersistenceError(Exception):
    """A change could not be made durable; it was undone."""


class Writer:
    def __init__(self, db: Database, store: MetricStore) -> None:
        self.db = db
        self.store = store
        self.failure: str | None = None  # why the last transaction failed, until one succeeds
        self._queue: list[tuple[Change, asyncio.Future[None] | None]] = []
        self._wake = asyncio.Event()
        self._writing = False

    async def commit(self, changes: list[Change], wait: bool = True) -> None:
        """Queue changes (already applied to the store); wait until durable unless ``wait`` is False."""
        if not changes:
            return
        future = asyncio.get_running_loop().create_future() if wait else None
        for change in changes[:-1]:
            self._queue.append((change, None))
        self._queue.append((changes[-1], future))
        self._wake.set()
        if future is not None:
            await future

    async def run(self) -> None:
        """The writer task: one transaction per batch of queued changes, forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                self._writing = True
                try:
                    await self._write(batch)
                finally:
                    self._writing = False

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until everything queued has been written, for a clean shutdown."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (self._queue or self._writing) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def probe(self) -> None:
        """While failing with nothing to write, test the disk so health recovers by itself."""
        if self.failure is None or self._queue:
            return
        try:
            try:
                await self.db.probe()
            except DatabaseGone:
                await self._recreate()
        except Exception as err:  # noqa: BLE001 - any database error keeps us unhealthy
            self.failure = f"{type(err).__name__}: {err}"
        else:
            log.info("persistence recovered")
            self.failure = None

    async def _recreate(self) -> None:
        """The file was deleted: start a new one holding everything in memory."""
        old = self.db
        if os.path.exists(old.path):
            raise DatabaseGone(f"persistence file {old.path} was replaced by another file")
        self.db = await Database.open(old.path)
        await old.close()
        log.warning("persistence file was removed; writing the whole store to a new one", extra={"file": old.path})
        await self.db.write([group_write(self.store, key, None) for key in list(self.store.groups)])

    async def _write(self, batch: list[tuple[Change, asyncio.Future[None] | None]]) -> None:
        writes = [group_write(self.store, key, names) for key, names in merge(c for c, _ in batch)]
        try:
            await self.db.write(writes)
        except Exception as err:  # noqa: BLE001 - every database error is reported the same way
            failed = batch + self._queue
            self._queue = []
            for change, _ in reversed(failed):
                self.store.undo(change)
            self.failure = f"{type(err).__name__}: {err}"
            log.error("could not persist changes; they were undone", extra={"err": self.failure})
            for _, future in failed:
                if future is not None and not future.done():
                    future.set_exception(PersistenceError(self.failure))
            return
        if self.failure is not None:
            log.info("persistence recovered")
        self.failure = None
        for _, future in batch:
            if future is not None and not future.done():
                future.set_result(None)


def merge(changes) -> list[tuple[GroupKey, frozenset[str] | None]]:
    """One entry per group, in first-change order: the union of the names written."""
    merged: dict[GroupKey, frozenset[str] | None] = {}
    for change in changes:
        if change.key in merged and merged[change.key] is None:
            continue
        if change.names is None or change.key not in merged:
            merged[change.key] = change.names
        else:
            merged[change.key] = merged[change.key] | change.names  # type: ignore[operator]
    return list(merged.items())


def grouping_text(key: GroupKey) -> str:
    return orjson.dumps(key).decode()


def group_write(store: MetricStore, key: GroupKey, names: frozenset[str] | None) -> GroupWrite:
    """What the database must hold for ``key`` now."""
    group = store.groups.get(key)
    if group is None:
        return GroupWrite(grouping_text(key), None, {}, replace_all=True)
    wanted = (group.families.keys() | group.quarantined.keys()) if names is None else names
    families: dict[str, FamilyRow | None] = {}
    for name in wanted:
        stored = group.families.get(name)
        quarantined = stored is None and name in group.quarantined
        if quarantined:
            stored = group.quarantined[name]
        families[name] = None if stored is None else FamilyRow(
            stored.name, stored.type, stored.help, stored.pushed_at, stored.lines,
            stored.added_inf, quarantined, stored.proto if stored.native else None,
        )
    row = (group.push_time, group.failure_time, group.ttl, group.problem)
    return GroupWrite(grouping_text(key), row, families, replace_all=names is None)

