"""The scrape endpoint, in the format and encoding the scraper asks for."""

from __future__ import annotations

import asyncio
import gzip
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import Request
from starlette.responses import Response

from pushgw.handler.negotiation import content_type, negotiate_scrape

# zlib releases the GIL: big bodies are compressed in slices on both cores, as
# concatenated gzip members (which every gzip reader, Prometheus's included,
# reads as one stream); small ones in one member, off the event loop too.
GZIP_SLICE = 4 * 1024 * 1024
_compressors = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gzip")


async def scrape(request: Request) -> Response:
    gateway = request.app.state.gateway
    await gateway.wait_ready()
    gateway.expire()
    fmt, escaping = negotiate_scrape(request.headers.get("accept", ""))
    body = gateway.exposition.render(fmt, gateway.metrics.families(), escaping)
    headers = {}
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        body = await gzip_body(body)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=content_type(fmt, escaping), headers=headers)


async def gzip_body(body: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    view = memoryview(body)
    slices = [view[i:i + GZIP_SLICE] for i in range(0, len(body), GZIP_SLICE)] or [view]
    members = await asyncio.gather(
        *(loop.run_in_executor(_compressors, _compress, piece) for piece in slices)
    )
    return b"".join(members)


def _compress(data: memoryview) -> bytes:
    return gzip.compress(data, compresslevel=1)
