"""What the HTTP handlers share: settings, the store, persistence, own metrics.

Every change to the store goes through a method here (push, delete, wipe),
so the handlers never know whether it is kept in memory, in SQLite or in a
PostgreSQL database shared with other replicas; and every read starts with
:meth:`Gateway.fresh`.

It also runs the gateway's background work: loading the database at start
(``/-/ready`` answers 503 until that is done), the group-commit writer, the
follower of other replicas' changes and the checkpoints (in a cluster), and
the sweep that removes expired groups.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pushgw.config import Settings
from pushgw.exposition.scrape import Exposition
from pushgw.grouping import format_group
from pushgw.handler.workers import Preparer
from pushgw.selfmetrics import GatewayMetrics
from pushgw.storage.checkpoint import Checkpointer
from pushgw.storage.engine import DatabaseError, Engine, is_postgres_url, open_engine
from pushgw.storage.family import PreparedPush
from pushgw.storage.limits import Limits
from pushgw.storage.replication import Follower
from pushgw.storage.rows import restore_row
from pushgw.storage.store import MetricStore, PushRejected
from pushgw.storage.writer import Applied, Operation, Writer, run_now

log = logging.getLogger("pushgw")

SWEEP_INTERVAL = 1.0  # seconds between expiry sweeps (scrapes expire exactly anyway)
RESTORE_CHUNK = 200  # groups restored between yields, so /-/healthy answers meanwhile
INDEX_SLICE = 20_000  # restored series indexed between yields, once ready
OPEN_RETRY_MIN, OPEN_RETRY_MAX = 0.2, 5.0  # seconds between attempts to reach the database


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
        self.metrics = GatewayMetrics(self._store_size, clustered=bool(settings.persistence_url))
        self.store.reserved = self.metrics.reserved()
        self.exposition = Exposition(self.store)
        self.preparer = Preparer(settings.push_workers, settings.push_template_lines)
        self.writer: Writer | None = None
        self.follower: Follower | None = None  # with PostgreSQL: other replicas' changes
        self.fatal: str | None = None  # why the database was refused after start-up began
        self._opening_failure: str | None = None  # the database cannot be reached yet
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_shutdown_request = on_shutdown_request

    # --- life cycle -----------------------------------------------------------

    @property
    def database(self) -> str:
        return self.settings.persistence_url or self.settings.persistence_file

    async def start(self) -> None:
        """Open the database and load it in the background; serve meanwhile."""
        if not self.database:
            self._ready.set()
        else:
            self._spawn(self._open_and_load())
        self._spawn(self._sweep())

    async def stop(self) -> None:
        """Let queued writes finish, then stop the background work and close the database."""
        if self.writer is not None and self.ready:
            await self.writer.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.writer is not None:
            await self.writer.engine.close()
        self.preparer.close()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def request_shutdown(self) -> None:
        self._on_shutdown_request()

    # --- changes ----------------------------------------------------------------

    async def push(
        self, grouping: dict[str, str], prepared: PreparedPush, replace: bool, ttl: float | None
    ) -> str | None:
        """Store a prepared push once it is durable; raises PushRejected, LimitExceeded,
        PersistenceError. Returns why its families were kept out of /metrics, if they were
        (--push.disable-consistency-check), else None."""

        def push(store: MetricStore) -> Applied:
            try:
                change = store.apply(grouping, prepared, replace, ttl)
            except PushRejected as err:  # its failure time is a change too
                return Applied(None, [err.change], err)
            group = store.groups[change.key]
            quarantined = group.problem if prepared.families.keys() & group.quarantined.keys() else None
            return Applied(quarantined, [change])

        return await self._change(push)

    async def delete(self, grouping: dict[str, str]) -> None:
        """Delete a group once it is durable; raises PersistenceError."""

        def delete(store: MetricStore) -> Applied:
            change = store.delete(grouping)
            return Applied(None, [change] if change is not None else [])

        await self._change(delete)

    async def wipe(self) -> None:
        """Delete every group; raises PersistenceError."""
        await self._change(lambda store: Applied(None, store.wipe()))

    async def _change(self, operation: Operation):
        await self.wait_ready()
        if self.writer is None:
            return run_now(self.store, operation)
        return await self.writer.submit(operation)

    async def fresh(self) -> None:
        """Before a read: wait for the state, take in every change acknowledged
        anywhere until now, and drop expired groups (a read must never show one)."""
        await self.wait_ready()
        if self.follower is not None:
            await self.follower.sync()
        self.expire()

    async def delete_matching(self, match: Callable[[dict[str, str]], bool]) -> int:
        """Delete the groups whose grouping labels ``match``, durably; how many went.

        Matched when the deletion is applied, so in a cluster it takes every
        group pushed on any replica before it."""

        def delete_matching(store: MetricStore) -> Applied:
            changes = store.delete_matching(match)
            return Applied(len(changes), changes)

        return await self._change(delete_matching)

    def expire(self) -> None:
        """Drop expired groups now; the writer deletes them durably in the background."""
        changes = self.store.expire()
        if changes:
            log.info("groups expired", extra={"count": len(changes)})
            if self.writer is not None:
                self.writer.expired(changes)

    def health_problem(self) -> str | None:
        """Why the gateway is unhealthy (a 500), or None."""
        if self._opening_failure is not None:
            return f"cannot open the database: {self._opening_failure}"
        if self.writer is not None and self.writer.failure is not None:
            return f"persistence is failing: {self.writer.failure}"
        if self.follower is not None and self.follower.failure is not None:
            return f"cannot follow the other replicas' changes: {self.follower.failure}"
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

    async def _open_and_load(self) -> None:
        """Open the database (retrying while it cannot be reached), load it, then serve."""
        pause = OPEN_RETRY_MIN
        while True:
            try:
                engine = await open_engine(self.database)
                break
            except Exception as err:  # noqa: BLE001 - a server away for now is waited for
                if isinstance(err, DatabaseError) or not is_postgres_url(self.database):
                    self.fatal = str(err)  # a database we must not use: stop, as at start-up
                    log.error("cannot use the database", extra={"err": self.fatal})
                    self.request_shutdown()
                    return
                self._opening_failure = f"{type(err).__name__}: {err}"
                log.warning("cannot open the database; retrying",
                            extra={"err": self._opening_failure, "retry_in": pause})
                await asyncio.sleep(pause)
                pause = min(2 * pause, OPEN_RETRY_MAX)
        self.metrics.watch_engine(engine)
        self.writer = Writer(engine, self.store)
        while True:
            try:
                await self._load(engine)
                break
            except Exception as err:  # noqa: BLE001 - the database went away meanwhile
                self._opening_failure = f"{type(err).__name__}: {err}"
                log.warning("cannot load the database; retrying", extra={"err": self._opening_failure})
                await asyncio.sleep(pause)
                pause = min(2 * pause, OPEN_RETRY_MAX)
        self._opening_failure = None
        if engine.shared:  # other replicas write to it too: follow them
            self.follower = Follower(engine, self.store, self.writer)  # type: ignore[arg-type]
            self.metrics.watch_follower(self.follower)
            self._spawn(self.follower.run())
            self._spawn(Checkpointer(engine, self.store, self.writer.lock).run())  # type: ignore[arg-type]
        self._spawn(self.writer.run())
        self._ready.set()
        while not self.store.index_pending(INDEX_SLICE):  # scrapes first, see there
            await asyncio.sleep(0)

    async def _load(self, engine: Engine) -> None:
        started = time.monotonic()
        rows = await engine.load()
        for i, row in enumerate(rows):
            restore_row(self.store, row)
            if i % RESTORE_CHUNK == RESTORE_CHUNK - 1:
                await asyncio.sleep(0)
        assert self.writer is not None
        self.writer.expired(self.store.expire())
        log.info(
            "restored persisted metrics",
            extra={
                "database": _redacted(self.database),
                "groups": len(self.store.groups),
                "series": self.store.series_count,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

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


def _redacted(target: str) -> str:
    """A database URL without its password, for logs."""
    if "://" not in target or "@" not in target:
        return target
    scheme, rest = target.split("://", 1)
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':', 1)[0]}{at}{host}"
