"""The scrape endpoint: the gateway's own metrics merged with every pushed group."""

from __future__ import annotations

import gzip

from starlette.requests import Request
from starlette.responses import Response

from pushgw.exposition.text_render import render_family

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


async def scrape(request: Request) -> Response:
    gateway = request.app.state.gateway
    await gateway.wait_ready()
    gateway.expire()
    body = exposition(gateway)
    headers = {}
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=TEXT_FORMAT, headers=headers)


def exposition(gateway) -> bytes:
    """Own families first (pushed families of the same name merged into them), then the store."""
    store = gateway.store
    parts = []
    merged = []
    for family in gateway.metrics.families():
        block = render_family(family) if family.metrics else b""
        if store.has_family(family.name):
            merged.append(family.name)
            if not block:
                block = render_family(family)
            block += store.family_block(family.name, with_header=False)
        parts.append(block)
    parts.append(store.render(frozenset(merged)))
    return b"".join(parts)
