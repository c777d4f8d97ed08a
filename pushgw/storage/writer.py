"""Group commit: every change to the store is made in a database transaction.

A change (a push, a delete, a wipe) is an operation on the store, queued
here; its HTTP answer waits until the transaction holding it has committed.
While one transaction is being written, new operations queue up and go
together in the next one, so concurrent requests share a commit.

A transaction first takes in what other replicas committed (with
PostgreSQL; one SQLite node has no others), then applies the queued
operations to the store in order, each checked against everything before
it, then writes the groups they changed. If it fails, every change of the
batch is undone in memory, newest first, and each request gets an error:
memory never holds what the database could not take.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pushgw.grouping import GroupKey
from pushgw.storage.engine import Engine
from pushgw.storage.replication import apply_remote
from pushgw.storage.rows import group_write, merge
from pushgw.storage.sqlite import Database, DatabaseGone
from pushgw.storage.store import Change, MetricStore

log = logging.getLogger("pushgw.persistence")


class PersistenceError(Exception):
    """A change could not be made durable; it was undone."""


@dataclass(slots=True)
class Applied:
    """What an operation did to the store.

    ``value`` goes to the caller once ``changes`` are durable; ``error``, if
    set, is raised instead (a refused push whose failure time is a change).
    """

    value: Any
    changes: list[Change]
    error: Exception | None = None


Operation = Callable[[MetricStore], Applied]


def run_now(store: MetricStore, operation: Operation) -> Any:
    """Apply an operation without a database (memory only)."""
    applied = operation(store)
    if applied.error is not None:
        raise applied.error
    return applied.value


class Writer:
    def __init__(self, engine: Engine, store: MetricStore) -> None:
        self.engine = engine
        self.store = store
        self.failure: str | None = None  # why the last transaction failed, until one succeeds
        # Held while the store takes in anything from the database: a batch
        # from its start to its commit, or another replica's changes.
        self.lock = asyncio.Lock()
        self._queue: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._expired: set[GroupKey] = set()
        self._wake = asyncio.Event()
        self._writing = False

    async def submit(self, operation: Operation) -> Any:
        """Queue an operation; its value once durable (raises its error, or PersistenceError)."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((operation, future))
        self._wake.set()
        return await future

    def expired(self, changes: list[Change]) -> None:
        """Groups whose time to live ran out, already gone from memory: delete them
        durably in the next transaction. Nobody waits, and a failure retries them."""
        if changes:
            self._expired.update(c.key for c in changes)
            self._wake.set()

    @property
    def busy(self) -> bool:
        """A transaction is being written, or is about to be: it takes in whatever
        was committed before it. (After a failure, nothing is until new work comes.)"""
        return self._writing or self._wake.is_set()

    async def run(self) -> None:
        """The writer task: one transaction per batch of queued operations, forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._queue or self._expired:
                self._writing = True
                try:
                    await self._write()
                finally:
                    self._writing = False

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until everything queued has been written, for a clean shutdown."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (self._queue or self._writing) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def probe(self) -> None:
        """While failing with nothing to write, test the database so health recovers by itself."""
        if self.failure is None or self._queue:
            return
        try:
            try:
                await self.engine.probe()
            except DatabaseGone:
                await self._recreate()
        except Exception as err:  # noqa: BLE001 - any database error keeps us unhealthy
            self.failure = f"{type(err).__name__}: {err}"
        else:
            log.info("persistence recovered")
            self.failure = None

    async def _recreate(self) -> None:
        """The SQLite file was deleted: start a new one holding everything in memory."""
        old = self.engine
        assert isinstance(old, Database)
        if os.path.exists(old.path):
            raise DatabaseGone(f"persistence file {old.path} was replaced by another file")
        self.engine = await Database.open(old.path)
        await old.close()
        log.warning("persistence file was removed; writing the whole store to a new one", extra={"file": old.path})
        await self.engine.write([group_write(self.store, key, None) for key in list(self.store.groups)])

    async def _write(self) -> None:
        store = self.store
        applied: list[tuple[asyncio.Future[Any], Applied]] = []
        batch: list[tuple[Operation, asyncio.Future[Any]]] = []
        expired: set[GroupKey] = set()
        taken = False
        async with self.lock:
            try:
                async with self.engine.transaction() as tx:
                    # Taken only now: in a cluster, what queued while waiting
                    # for the lock joins this transaction instead of the next.
                    batch, self._queue = self._queue, []
                    expired, self._expired = self._expired, set()
                    taken = True
                    if tx.remote is not None:
                        expired.update(c.key for c in apply_remote(store, tx.remote))
                    expired.update(c.key for c in store.expire())
                    for operation, future in batch:
                        try:
                            result = operation(store)
                        except Exception as err:  # noqa: BLE001 - it changed nothing: the caller's answer
                            if not future.done():
                                future.set_exception(err)
                            continue
                        applied.append((future, result))
                    # Expired groups first, as whole groups: a later change in
                    # the batch may have created the group again.
                    gone = [Change(key, None, None) for key in expired]
                    changes = gone + [c for _, result in applied for c in result.changes]
                    await tx.write([group_write(store, key, names) for key, names in merge(changes)])
            except Exception as err:  # noqa: BLE001 - every database error is reported the same way
                if not taken:  # failed before taking the queue: it fails with the transaction
                    batch, self._queue = self._queue, []
                    expired, self._expired = self._expired, set()
                for _, result in reversed(applied):
                    for change in reversed(result.changes):
                        store.undo(change)
                self._expired |= expired
                self.failure = f"{type(err).__name__}: {err}"
                log.error("could not persist changes; they were undone", extra={"err": self.failure})
                errors = {id(future): result.error for future, result in applied}
                for _, future in batch:  # applied or not: none of it is durable
                    if not future.done():
                        future.set_exception(errors.get(id(future)) or PersistenceError(self.failure))
                return
        if self.failure is not None:
            log.info("persistence recovered")
        self.failure = None
        for future, result in applied:
            if future.done():
                continue
            if result.error is not None:
                future.set_exception(result.error)
            else:
                future.set_result(result.value)
