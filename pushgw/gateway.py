"""What the HTTP handlers share: settings, the store, persistence, own metrics.

It also runs the gateway's background work: restoring the database at start
(``/-/ready`` answers 503 until that is done), the group-commit writer, and
the sweep that removes expired groups.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections.abc import Callable

import orjson

from pushgw.config import Settings
from pushgw.exposition.scrape import Exposition
from pushgw.grouping import format_group
from pushgw.handler.workers import Preparer
from pushgw.selfmetrics import GatewayMetrics
from pushgw.storage.limits import Limits
from pushgw.storage.sqlite import Database
from pushgw.storage.family import StoredFamily
from pushgw.storage.store import Change, MetricStore
from pushgw.storage.writer import Writer

log = logging.getLogger("pushgw")

SWEEP_INTERVAL = 1.0  # seconds between expiry sweeps (scrapes expire exactly anyway)
RESTORE_CHUNK = 200  # groups restored between yields, so /-/healthy answers meanwhile
INDEX_SLICE = 20_000  # restored series indexed between yields, once ready


class Gateway:
    """One running gateway; handlers reach it as ``request.app.state.gateway``."""

    def __init__(self, settings: Settings, on_shutdown_request: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.route_prefix = settings.effective_route_prefix
        self.started_at = time.time()
        self.store = MetricStore(
            check_consistency=not settings.disable_consistency_check,
            default_ttl=settings.metric_timetolive,
            limits=Limits(
                series_per_push=settings.max_series_per_push,
                labels_per_series=settings.max_labels_per_series,
                label_value_length=settings.max_label_value_length,
                groups=settings.max_groups,
                series=settings.max_series,
            ),
            utf8_names=settings.enable_utf8_names,
        )
        self.metrics = GatewayMetrics(self._store_size)
        self.store.reserved = self.metrics.reserved()
        self.exposition = Exposition(self.store)
        self.preparer = Preparer(settings.push_workers, settings.push_template_lines)
        self.writer: Writer | None = None
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_shutdown_request = on_shutdown_request

    # --- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        """Open the database and restore it in the background; serve meanwhile."""
        if not self.settings.persistence_file:
            self._ready.set()
        else:
            db = await Database.open(self.settings.persistence_file)
            self.writer = Writer(db, self.store)
            self._spawn(self._restore(db))
        self._spawn(self._sweep())

    async def stop(self) -> None:
        """Let queued writes finish, then stop the background work and close the database."""
        if self.writer is not None and self.ready:
            await self.writer.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.writer is not None:
            await self.writer.db.close()
        self.preparer.close()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def request_shutdown(self) -> None:
        self._on_shutdown_request()

    # --- changes ----------------------------------------------------------------

    async def commit(self, changes: Change | list[Change] | None) -> None:
        """Make applied changes durable before answering; raises PersistenceError."""
        if self.writer is None or changes is None:
            return
        await self.writer.commit(changes if isinstance(changes, list) else [changes])

    async def delete_matching(self, match: Callable[[dict[str, str]], bool]) -> int:
        """Delete the groups whose grouping labels ``match``, durably; how many went."""
        changes = self.store.delete_matching(match)
        await self.commit(changes)
        return len(changes)

    def expire(self) -> None:
        """Drop expired groups now (a scrape must never show one); persist that in the background."""
        changes = self.store.expire()
        if changes:
            log.info("groups expired", extra={"count": len(changes)})
            if self.writer is not None:
                self._spawn(self.writer.commit(changes, wait=False))

    def health_problem(self) -> str | None:
        """Why the gateway is unhealthy (a 500), or None."""
        if self.writer is not None and self.writer.failure is not None:
            return f"persistence is failing: {self.writer.failure}"
        return None

    def health_notes(self) -> list[str]:
        """Problems that leave the gateway healthy but need an operator: quarantined pushes."""
        return [
            f"{format_group(g.labels)} holds pushes kept out of /metrics: {g.problem}"
            for g in self.store.groups.values() if g.problem
        ]

    def count_request(self, handler: str, method: str, code: int) -> None:
        self.metrics.requests.labels(str(code), handler, method.lower()).inc()

    # --- background work --------------------------------------------------------

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks and task.done():
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def _restore(self, db: Database) -> None:
        started = time.monotonic()
        rows = await db.load()
        now = self.store.clock()
        for i, row in enumerate(rows):
            labels = dict(orjson.loads(row.grouping))
            families = [
                (StoredFamily(f.name, f.type, f.help, f.lines, array("q"), f.pushed_at,
                              added_inf=f.added_inf, proto=f.proto, native=f.proto is not None),
                 f.quarantined)
                for f in row.families
            ]
            self.store.restore(labels, row.push_time, row.failure_time, row.ttl, families, row.problem)
            if i % RESTORE_CHUNK == RESTORE_CHUNK - 1:
                await asyncio.sleep(0)
        expired = self.store.expire(now)
        assert self.writer is not None
        self._spawn(self.writer.run())
        if expired:
            await self.writer.commit(expired)
        log.info(
            "restored persisted metrics",
            extra={
                "file": db.path,
                "groups": len(self.store.groups),
                "series": self.store.series_count,
                "expired": len(expired),
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        self._ready.set()
        while not self.store.index_pending(INDEX_SLICE):  # scrapes first, see there
            await asyncio.sleep(0)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            if not self.ready:
                continue
            self.expire()
            if self.writer is not None:
                await self.writer.probe()

    def _store_size(self) -> tuple[int, int, int, int]:
        store = self.store
        inconsistent = sum(1 for g in store.groups.values() if g.problem)
        return len(store.groups), store.series_count, store.expired_total, inconsistent
