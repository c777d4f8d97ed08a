"""Preparing pushes (inflate, parse, render) in worker processes for big bodies.

That work is pure Python and needs nothing of the store, so big pushes are
prepared in other processes and both cores work; the event loop only checks
and applies the result. Small bodies are prepared in place: a round trip to
a worker would cost more than it saves.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from pushgw.handler.body import decompress, is_protobuf, parse_families
from pushgw.model import gc_paused
from pushgw.storage.family import PreparedPush, prepare_push
from pushgw.storage.limits import Limits
from pushgw.storage.templates import PushTemplates

# Bodies at least this large (as received) go to a worker.
WORKER_THRESHOLD = 16 * 1024
COMPRESSED_WORKER_THRESHOLD = 2 * 1024

# This process's templates of repeated big pushes (from WORKER_THRESHOLD on,
# decompressed): a worker's own, or the server's where it prepares in place.
_TEMPLATES = PushTemplates()


def keep_templates(max_lines: int) -> None:
    """Set how many template lines this process keeps (``--push.template-lines``)."""
    global _TEMPLATES
    _TEMPLATES = PushTemplates(max_lines)


def prepare_body(
    body: bytes,
    content_encoding: str,
    content_type: str,
    grouping: dict[str, str],
    pushed_at: float,
    utf8_names: bool,
    limits: Limits,
    max_decompressed_size: int,
) -> PreparedPush:
    """Body bytes to a prepared push; raises BodyError or LimitExceeded.

    Big text bodies go through this process's templates (see PushTemplates).
    """
    with gc_paused():  # rendering builds as many small objects as parsing
        body = decompress(body, content_encoding, max_decompressed_size)

        def prepare(body: bytes) -> PreparedPush:
            families = parse_families(body, content_type, utf8_names)
            return prepare_push(families, grouping, pushed_at, utf8_names, limits)

        if len(body) < WORKER_THRESHOLD or not _TEMPLATES.max_lines or is_protobuf(content_type):
            return prepare(body)
        key = (tuple(sorted(grouping.items())), utf8_names, limits)
        return _TEMPLATES.prepare(key, body, pushed_at, prepare)


class Preparer:
    """Runs :func:`prepare_body` in place or in a worker process, by body size."""

    def __init__(self, workers: int, template_lines: int = 100_000) -> None:
        self._pool: ProcessPoolExecutor | None = None
        keep_templates(template_lines)
        if workers > 0:
            # forkserver: workers do not inherit the server's threads and sockets.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["pushgw.handler.workers"])
            self._pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=context,
                initializer=keep_templates, initargs=(template_lines,),
            )

    async def prepare(self, body: bytes, content_encoding: str, *args: object) -> PreparedPush:
        threshold = COMPRESSED_WORKER_THRESHOLD if content_encoding else WORKER_THRESHOLD
        if self._pool is None or len(body) < threshold:
            return prepare_body(body, content_encoding, *args)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, prepare_body, body, content_encoding, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
