"""Checkpoints: the shared database's tables brought up to date from memory.

In a cluster a writer's turn appends only its change log entry (the less it
holds the writers' lock, the more turns per second). The tables hold the
whole state as of a log position, the checkpoint; a replica starting up
reads them and takes in the log after it. Every CHECKPOINT_INTERVAL one
replica, whichever holds the checkpointer's lock, writes the groups changed
since the last checkpoint as its store holds them, and moves the checkpoint
to its own position. It is a replica's job because the replica already has
each of those groups in its final form; rebuilding them from the log would
mean reading it all again. A group changed ten times in the interval is
written once, which is the point.
"""

from __future__ import annotations

import asyncio
import logging

from pushgw.grouping import group_key
from pushgw.storage.engine import Replicated
from pushgw.storage.rows import GroupWrite, group_write, grouping_labels
from pushgw.storage.store import MetricStore

log = logging.getLogger("pushgw.replication")

CHECKPOINT_INTERVAL = 5.0  # seconds; a starting replica replays about this much of the log
# Groups converted to rows at a time, under the writer's lock (about 10 µs
# each): 10k changed groups would otherwise stall the replica for 0.1 s.
CHECKPOINT_SLICE = 200


class ChangedGroups:
    """Which groups changed after the newest checkpoint this replica knows of.

    Fed every log entry the replica takes in or commits, with its position;
    what the checkpoint already holds is forgotten as soon as it is known.
    A replica learns of new checkpoints with every look at the log head,
    so this holds a few seconds of changes, not the whole log.
    """

    def __init__(self) -> None:
        self.checkpoint = 0  # the newest checkpoint position known
        self._changes: list[tuple[int, set[str]]] = []  # (position, groupings), oldest first

    def reset(self, checkpoint: int) -> None:
        """The state was read whole, as of ``checkpoint`` plus the entries added next."""
        self.checkpoint = checkpoint
        self._changes = []

    def add(self, position: int, writes: list[GroupWrite]) -> None:
        if position > self.checkpoint:
            self._changes.append((position, {w.grouping for w in writes}))

    def checkpointed(self, position: int) -> None:
        """The database's checkpoint is at ``position`` (or further)."""
        if position > self.checkpoint:
            self.checkpoint = position
            keep = next((i for i, (p, _) in enumerate(self._changes) if p > position), len(self._changes))
            del self._changes[:keep]

    def since_checkpoint(self, position: int) -> set[str]:
        """The groupings changed after the checkpoint, up to ``position``."""
        return set().union(*(groupings for p, groupings in self._changes if p <= position))


class Checkpointer:
    """The task that writes checkpoints while this replica holds the checkpointer's lock."""

    def __init__(self, engine: Replicated, store: MetricStore, lock: asyncio.Lock) -> None:
        self.engine = engine
        self.store = store
        self.lock = lock  # the writer's: under it, the store holds exactly the engine's position
        self.failure: str | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            try:
                await self.write()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - tried again next time; the log keeps everything meanwhile
                message = f"{type(err).__name__}: {err}"
                if message != self.failure:
                    log.warning("cannot write a checkpoint", extra={"err": message})
                self.failure = message
            else:
                self.failure = None

    async def write(self) -> bool:
        """One checkpoint, if this replica writes them and anything changed; True if written.

        The groups are read from the store a slice at a time, letting turns
        run in between, so a group read later may hold changes made after
        ``position``. That is harmless: a starting replica applies the log
        after ``position`` onto it, and every entry sets what it writes
        (nothing in it is relative to the state before), so applying again
        what a row already holds changes nothing, and the last entry that
        touches a family decides it, as it did in every store.
        """
        if not await self.engine.is_checkpointer():
            return False
        async with self.lock:  # between turns: the store holds exactly this position
            position = self.engine.position
            if position <= self.engine.changed.checkpoint:
                return False
            groupings = list(self.engine.changed.since_checkpoint(position))
        writes: list[GroupWrite] = []
        for start in range(0, len(groupings), CHECKPOINT_SLICE):
            await asyncio.sleep(0)  # requests and turns go first
            async with self.lock:
                writes += [group_write(self.store, group_key(grouping_labels(grouping)), None)
                           for grouping in groupings[start:start + CHECKPOINT_SLICE]]
        await self.engine.checkpoint(position, writes)
        return True
