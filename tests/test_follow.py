"""Following the log: commits in quick succession are not announced, and followers still keep up.

Real replicas' writers and followers run in-process on the session's real
PostgreSQL (see test_checkpoint.py's Replica).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from pushgw.exposition.text_parser import parse_text
from pushgw.storage.postgres import CHANNEL
from pushgw.storage.writer import Applied
from test_checkpoint import Replica, held


def test_a_burst_of_commits_is_announced_once_and_followed_without_reads(postgres_url):
    async def scenario() -> None:
        a, b = await Replica.start(postgres_url), await Replica.start(postgres_url)
        announced: list[int] = []
        listener = await asyncpg.connect(postgres_url)
        await listener.add_listener(CHANNEL, lambda *args: announced.append(int(args[3])))
        following = asyncio.get_running_loop().create_task(b.follower.run())
        try:
            await asyncio.sleep(0.2)  # quiet: the first commit is announced
            start = a.engine.position
            for i in range(20):  # one after the other, milliseconds apart
                await a.writer.submit(lambda store, i=i: Applied(None, [
                    store.push({"job": f"g{i % 7}"}, parse_text(f"m {i}\n".encode()), replace=True)]))
            assert a.engine.position == start + 20
            deadline = time.monotonic() + 0.6  # well before the once-a-second poll
            while b.engine.position < a.engine.position and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert b.engine.position == a.engine.position, "b did not follow the burst"
            assert held(b.store) == held(a.store)
            await asyncio.sleep(0.1)  # notifications still on their way
            assert announced and announced[0] == start + 1
            assert len(announced) < 10, f"most of the burst should go unannounced: {announced}"
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            await listener.close()
            for replica in (a, b):
                await replica.stop()

    asyncio.run(scenario())
