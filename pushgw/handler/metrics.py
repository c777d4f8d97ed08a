"""The scrape endpoint, in the format and encoding the scraper asks for."""

from __future__ import annotations

import gzip

from starlette.requests import Request
from starlette.responses import Response

from pushgw.handler.negotiation import content_type, negotiate_scrape


async def scrape(request: Request) -> Response:
    gateway = request.app.state.gateway
    await gateway.wait_ready()
    gateway.expire()
    fmt, escaping = negotiate_scrape(request.headers.get("accept", ""))
    body = gateway.exposition.render(fmt, gateway.metrics.families(), escaping)
    headers = {}
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=content_type(fmt, escaping), headers=headers)
