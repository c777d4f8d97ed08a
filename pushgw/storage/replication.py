"""Replication: every replica's store follows what the others commit.

All replicas of a clustered gateway write to one PostgreSQL database, one
transaction at a time, and each transaction appends the groups it changed to
a change log with consecutive positions. A replica's store always holds the
state at some log position (``Engine.position``) plus its own batch in
flight. It moves forward in three ways:

* its writer takes the cluster's lock and first takes in everything after
  its position, so every push is checked against every one acknowledged
  before it, on any replica;
* the :class:`Follower` takes in new positions when a commit after a quiet
  spell is announced (LISTEN/NOTIFY), then looks at the log every few
  milliseconds while changes keep coming, so replicas lag by milliseconds;
* a read first asks the database for the newest position and catches up to
  it (:meth:`Follower.sync`), so a read on one replica shows every push
  acknowledged on any other before the read began.

The log holds what each transaction wrote (pushgw/storage/changelog.py),
taken in by position, one after the other. A replica whose position fell
out of the log (it was away too long) reloads everything.

The SQLite engine is the single-node case: nothing remote, ever.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pushgw.storage.engine import RemoteChanges, Replicated
from pushgw.storage.rows import grouping_text, restore_row, take_in
from pushgw.storage.store import Change, MetricStore

if TYPE_CHECKING:
    from pushgw.storage.writer import Writer

log = logging.getLogger("pushgw.replication")

POLL_INTERVAL = 1.0  # seconds: catch up even if a notification was lost
# Commits in quick succession are not announced (waking every listener costs
# the database more than a look at the log): after a change, a follower looks
# every HOT_POLL for HOT_SPELL seconds, longer than the database's QUIET.
HOT_POLL = 0.01  # seconds
HOT_SPELL = 0.5  # seconds
SYNC_TIMEOUT_WHILE_FAILING = 0.5  # seconds a read waits for a database known to be away
RETRY_MIN, RETRY_MAX = 0.2, 5.0  # seconds between attempts while the database is away


def apply_remote(store: MetricStore, remote: RemoteChanges) -> list[Change]:
    """Take in other replicas' changes (already committed: nothing to undo).

    Returns the groups whose time to live ran out meanwhile, dropped from
    memory: the database still holds them until a writer deletes them."""
    if remote.reload is not None:
        keep = {row.grouping for row in remote.reload}
        for key in [k for k in store.groups if grouping_text(k) not in keep]:
            store.delete(dict(key))
        for row in remote.reload:
            restore_row(store, row)
    for writes in remote.entries:
        take_in(store, writes)
    return store.expire()  # a restored group may have expired meanwhile: every replica drops it alike


class Follower:
    """Keeps a replica's store up to date with the log, and reads fresh."""

    def __init__(self, engine: Replicated, store: MetricStore, writer: Writer) -> None:
        self.engine = engine
        self.store = store
        self.writer = writer  # its lock is held while the store changes; it deletes expired groups
        self.observe_lag: Callable[[float], None] = lambda seconds: None
        self.failure: str | None = None  # why the last catch-up failed, until one succeeds

    async def sync(self) -> None:
        """Catch up to the newest position committed anywhere (before a read).

        A connection the database dropped (a restart, a failover) is retried
        once on a new one. While the database is away the attempt is bounded
        and the read serves what is held; health says why.
        """
        bound = SYNC_TIMEOUT_WHILE_FAILING if self.failure is not None else None
        for attempt in (1, 2):
            try:
                head = await asyncio.wait_for(self.engine.head(), bound)
                if head > self.engine.position:
                    await asyncio.wait_for(self.catch_up(head, read=True), bound)
                self._recovered()
                return
            except Exception as err:  # noqa: BLE001 - reads go on from memory
                if attempt == 2 or isinstance(err, asyncio.TimeoutError):
                    self._failed(err)

    async def catch_up(self, target: int | None = None, read: bool = False) -> None:
        """Take in everything after our position (at least up to ``target``).

        The replication lag is observed only when following, not when a read
        catches up (that lag is the read's own wait, not replication's)."""
        async with self.writer.lock:
            if target is not None and self.engine.position >= target:
                return  # a batch or another catch-up got there meanwhile
            remote = await self.engine.changes_since(self.engine.position)
            if remote.position <= self.engine.position:
                return
            self.writer.expired(apply_remote(self.store, remote))
            self.engine.position = remote.position
        if remote.committed_at is not None and not read:
            self.observe_lag(max(0.0, time.time() - remote.committed_at))

    async def run(self) -> None:
        """Follow the log: at a notification, every HOT_POLL while changes keep
        coming, and every POLL_INTERVAL anyway (one can be lost with a connection)."""
        pause = RETRY_MIN
        seen, changed_at = self.engine.position, -math.inf
        while True:
            try:
                if self.engine.position != seen:  # by anyone: a follower, the writer's turns
                    seen, changed_at = self.engine.position, time.monotonic()
                hot = time.monotonic() - changed_at < HOT_SPELL
                position = await self.engine.notified(HOT_POLL if hot else POLL_INTERVAL)
                if self.writer.busy or (position is None and self.engine.position != seen):
                    pass  # the writer's turns take in whatever was committed before them
                elif position is None or position > self.engine.position:
                    await self.catch_up(position)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - retried after a growing pause
                self._failed(err)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX)
            else:
                pause = RETRY_MIN
                self._recovered()

    def _recovered(self) -> None:
        """The database answered: health no longer reports the follower."""
        if self.failure is not None:
            log.info("replication recovered")
            self.failure = None

    def _failed(self, err: Exception) -> None:
        message = f"{type(err).__name__}: {err}"
        if message != self.failure:
            log.warning("cannot follow the database", extra={"err": message})
        self.failure = message
