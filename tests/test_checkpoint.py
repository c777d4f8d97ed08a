"""Checkpoints: the tables plus the log after them hold exactly what the replicas hold.

A writer's turn appends only its log entry; one replica at a time writes the
groups changed since the last checkpoint from its memory. These tests run
real replicas' writers and checkpointers in-process on the session's real
PostgreSQL, with random operations, and compare what a starting replica
would read (and the tables alone, once checkpointed) with the stores.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from pushgw.exposition.text_parser import parse_text
from pushgw.storage import checkpoint
from pushgw.storage.checkpoint import ChangedGroups, Checkpointer
from pushgw.storage.postgres import PostgresDatabase, _read_groups
from pushgw.storage.replication import Follower
from pushgw.storage.rows import GroupRow, GroupWrite, apply_writes, group_write, merge, restore_row, row_write
from pushgw.storage.store import MetricStore
from pushgw.storage.writer import Applied, Writer
from test_changelog import random_changes
from test_store import Clock


CLOCK = Clock()  # one for every store, as replicas share the time of day


def state(writes: list[GroupWrite] | list[GroupRow]) -> dict:
    """Groups as the database keeps them, for comparison (rows or whole writes),
    without those whose time to live ran out (each replica drops them alone)."""
    writes = [row_write(w) if isinstance(w, GroupRow) else w for w in writes]
    return {
        w.grouping: (w.row, sorted(
            (f.name, f.type, f.help, f.pushed_at, f.lines, tuple(f.added_inf), f.quarantined, f.proto)
            for f in w.families.values()))
        for w in writes
        if not (w.row[2] > 0 and (w.row[0] or w.row[1]) + w.row[2] <= CLOCK.now)
    }


def held(store: MetricStore) -> dict:
    return state([group_write(store, key, None) for key in store.groups])


@pytest.mark.parametrize("seed", range(10))
def test_rows_brought_forward_by_log_entries_equal_the_store(seed):
    """apply_writes (rows) and take_in (the store) agree on every entry."""
    rng = random.Random(seed)
    store = MetricStore(clock=Clock(), check_consistency=rng.random() < 0.5)
    groups: dict[str, GroupRow] = {}
    for _ in range(60):
        changes = []
        for _ in range(rng.randint(1, 4)):
            changes += random_changes(store, rng)
        apply_writes(groups, [group_write(store, key, names) for key, names in merge(changes)])
        assert state(list(groups.values())) == held(store)


def test_changed_groups_forget_what_a_checkpoint_holds():
    changed = ChangedGroups()
    write = lambda grouping: GroupWrite(grouping, None, {}, True)  # noqa: E731
    changed.reset(10)
    changed.add(9, [write("old")])  # before the checkpoint: already in it
    changed.add(11, [write("a"), write("b")])
    changed.add(12, [write("c")])
    changed.add(13, [write("a")])
    assert changed.since_checkpoint(13) == {"a", "b", "c"}
    assert changed.since_checkpoint(11) == {"a", "b"}
    changed.checkpointed(12)
    assert changed.checkpoint == 12 and changed.since_checkpoint(13) == {"a"}
    changed.checkpointed(11)  # an older one learned late changes nothing
    assert changed.checkpoint == 12 and changed.since_checkpoint(13) == {"a"}


class Replica:
    """A store, its writer and its engine, as the gateway runs them (without HTTP)."""

    def __init__(self, engine: PostgresDatabase) -> None:
        self.engine = engine
        self.store = MetricStore(clock=CLOCK, check_consistency=True)
        self.writer = Writer(engine, self.store)
        self.follower = Follower(engine, self.store, self.writer)
        self.checkpointer = Checkpointer(engine, self.store, self.writer.lock)
        self.task = asyncio.get_running_loop().create_task(self.writer.run())

    @classmethod
    async def start(cls, url: str) -> Replica:
        engine = await PostgresDatabase.open(url)
        replica = cls(engine)
        for row in await engine.load():
            restore_row(replica.store, row)
        return replica

    async def change(self, rng: random.Random) -> None:
        await self.writer.submit(lambda store: Applied(None, random_changes(store, rng)))

    async def stop(self) -> None:
        if self.task.done():
            return
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.engine.close()


async def whole_state(url: str) -> tuple[int, dict]:
    """What a replica starting now would load: its position and groups."""
    engine = await PostgresDatabase.open(url)
    try:
        rows = await engine.load()
        return engine.position, state(rows)
    finally:
        await engine.close()


async def tables(url: str) -> tuple[int, int, dict]:
    """Head, checkpoint, and the groups the tables alone hold."""
    engine = await PostgresDatabase.open(url)
    try:
        async with engine._pool.acquire() as conn:
            head = await conn.fetchval("SELECT position FROM pushgw_head")
            checkpoint = await conn.fetchval("SELECT position FROM pushgw_checkpoint")
            return head, checkpoint, state(await _read_groups(conn))
    finally:
        await engine.close()


@pytest.mark.parametrize("seed", range(3))
def test_checkpoints_and_the_log_after_them_hold_the_replicas_state(postgres_url, seed):
    async def scenario() -> None:
        rng = random.Random(seed)
        a, b = await Replica.start(postgres_url), await Replica.start(postgres_url)
        try:
            assert await a.checkpointer.write() is False  # nothing changed yet
            assert await b.engine.is_checkpointer() is False  # a asked first
            checkpoints = 0
            for step in range(120):
                replica = rng.choice((a, b))
                await replica.change(rng)
                roll = rng.random()
                if roll < 0.15:
                    checkpoints += await a.checkpointer.write()
                elif roll < 0.2:  # not the checkpointer: writes nothing
                    assert await b.checkpointer.write() is False
                if step % 20 == 19:  # a replica starting now: the checkpoint, then the log after it
                    position, groups = await whole_state(postgres_url)
                    await replica.follower.catch_up(position)
                    assert (position, groups) == (replica.engine.position, held(replica.store))
            assert checkpoints > 3
            # b follows everything, then the checkpointer's session ends: b takes over and
            # writes what changed since a's last checkpoint, which b learned by following.
            await a.change(rng)
            await b.follower.catch_up(a.engine.position)
            await a.stop()
            for _ in range(100):  # the server releases the lock once it sees a's session end
                if await b.engine.is_checkpointer():
                    break
                await asyncio.sleep(0.05)
            assert await b.engine.is_checkpointer() is True
            assert await b.checkpointer.write() is True
            head, checkpoint, groups = await tables(postgres_url)
            assert head == checkpoint == b.engine.position
            assert groups == held(b.store)
            assert await b.checkpointer.write() is False  # nothing new
        finally:
            for replica in (a, b):
                await replica.stop()

    asyncio.run(scenario())


def test_a_checkpoint_read_in_slices_while_turns_go_on_adds_up(postgres_url, monkeypatch):
    """Groups read after the checkpoint's position, with turns in between: the log
    after the position, applied onto them, still gives every replica's state."""
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SLICE", 1)

    async def scenario() -> None:
        rng = random.Random(11)
        a, b = await Replica.start(postgres_url), await Replica.start(postgres_url)
        def push(store: MetricStore) -> Applied:  # 40 groups: a slice each
            g = rng.randrange(40)
            body = f"m{{g=\"{g}\"}} {rng.random()}\n"
            return Applied(None, [store.push({"job": f"g{g}"}, parse_text(body.encode()), replace=rng.random() < 0.5)])

        try:
            for _ in range(6):
                for _ in range(40):
                    await rng.choice((a, b)).writer.submit(push)
                written, *_ = await asyncio.gather(
                    a.checkpointer.write(), *(rng.choice((a, b)).writer.submit(push) for _ in range(20)))
                assert written
                position, groups = await whole_state(postgres_url)
                await a.follower.catch_up(position)
                assert (position, groups) == (a.engine.position, held(a.store))
            await a.follower.catch_up(b.engine.position)
            await b.follower.catch_up(a.engine.position)
            assert await a.checkpointer.write() is True
            head, at, groups = await tables(postgres_url)
            assert head == at == a.engine.position == b.engine.position
            assert groups == held(a.store)
            assert groups == held(b.store)
        finally:
            for replica in (a, b):
                await replica.stop()

    asyncio.run(scenario())


def test_a_checkpoint_never_goes_back(postgres_url):
    """Two replicas that both believe they checkpoint: the older position is not written."""
    async def scenario() -> None:
        rng = random.Random(7)
        a = await Replica.start(postgres_url)
        try:
            for _ in range(10):
                await a.change(rng)
            old_position = a.engine.position
            old = [group_write(a.store, key, None) for key in a.store.groups]
            for _ in range(10):
                await a.change(rng)
            await a.checkpointer.write()
            before = await tables(postgres_url)
            await a.engine.checkpoint(old_position, old)  # late, from an older state
            assert await tables(postgres_url) == before
            assert before[2] == held(a.store)
        finally:
            await a.stop()

    asyncio.run(scenario())


def test_a_group_that_expires_while_a_replica_takes_it_in_leaves_the_database(postgres_url):
    """Every replica drops an expired group from memory alone; one that drops it
    while taking in the log also deletes it, or the rows would stay forever."""
    async def scenario() -> None:
        a, b = await Replica.start(postgres_url), await Replica.start(postgres_url)
        try:
            def push(store: MetricStore) -> Applied:
                return Applied(None, [store.push({"job": "short"}, parse_text(b"m 1\n"), replace=True, ttl=5.0)])

            await a.writer.submit(push)
            position = a.engine.position
            CLOCK.now += 10  # its time to live runs out before b sees it
            await b.follower.catch_up(position)
            assert not b.store.groups
            for _ in range(100):
                if b.engine.position > position:
                    break
                await asyncio.sleep(0.02)
            assert b.engine.position == position + 1  # b's writer deleted it
            await a.follower.catch_up(position + 1)
            assert await a.checkpointer.write() is True
            async with a.engine._pool.acquire() as conn:
                assert await conn.fetchval("SELECT position FROM pushgw_checkpoint") == position + 1
                assert await _read_groups(conn) == []  # the rows themselves, expired or not
        finally:
            for replica in (a, b):
                await replica.stop()

    asyncio.run(scenario())
