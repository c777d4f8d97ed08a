"""The scrape endpoint: the gateway's own metrics merged with every pushed group."""

from __future__ import annotations

import gzip
import heapq

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
    """Every family sorted by name, as the official gathers them.

    Pushed families named like one of the gateway's own are merged into it,
    under the gateway's HELP (the consistency check has ensured the type).
    """
    store = gateway.store
    own = {f.name: f for f in gateway.metrics.families()}
    parts = []
    last = None
    for name in heapq.merge(sorted(own), store.family_names()):
        if name == last:
            continue
        last = name
        family = own.get(name)
        if family is None:
            parts.append(store.family_block(name))
        elif store.has_family(name):
            parts.append(render_family(family) + store.family_block(name, with_header=False))
        elif family.metrics:
            parts.append(render_family(family))
    return b"".join(parts)
