"""The scrape endpoint, in the format and encoding the scraper asks for."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import Request
from starlette.responses import Response

from pushgw.handler.negotiation import content_type, negotiate_scrape
from pushgw.storage.family import StoredFamily

# zlib releases the GIL: compression runs on both cores, off the event loop.
_compressors = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gzip")


async def scrape(request: Request) -> Response:
    gateway = request.app.state.gateway
    await gateway.fresh()
    fmt, escaping = negotiate_scrape(request.headers.get("accept", ""))
    pieces = gateway.exposition.pieces(fmt, gateway.metrics.families(), escaping)
    headers = {}
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        body = await gzip_pieces(pieces)
        headers["Content-Encoding"] = "gzip"
    else:
        body = b"".join(p.lines if isinstance(p, StoredFamily) else p for p in pieces)
    return Response(body, media_type=content_type(fmt, escaping), headers=headers)


async def gzip_pieces(pieces: list) -> bytes:
    """The body as concatenated gzip members, which every gzip reader reads as one stream.

    Each stored family's lines are one member, compressed once and kept with
    it; the bytes between them (headers, own metrics) are compressed per scrape.
    """
    loop = asyncio.get_running_loop()
    members: list[bytes | Awaitable[bytes]] = []
    raw: list = []

    def flush_raw() -> None:
        if raw:
            members.append(loop.run_in_executor(_compressors, _compress, b"".join(raw)))
            raw.clear()

    for piece in pieces:
        if not isinstance(piece, StoredFamily):
            raw.append(piece)
            continue
        flush_raw()
        members.append(
            piece.gz if piece.gz is not None else asyncio.ensure_future(_compress_part(loop, piece))
        )
    flush_raw()
    return b"".join([m if isinstance(m, bytes) else await m for m in members])


async def _compress_part(loop: asyncio.AbstractEventLoop, part: StoredFamily) -> bytes:
    part.gz = await loop.run_in_executor(_compressors, _compress, part.lines)
    return part.gz


def _compress(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)
