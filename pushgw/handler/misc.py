"""Health, readiness and the lifecycle (quit) endpoint."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pushgw.handler.responses import text, text_error


async def healthy(request: Request) -> Response:
    gateway = request.app.state.gateway
    problem = gateway.health_problem()
    if problem is not None:
        gateway.count_request("healthy", request.method, 500)
        return text_error(problem, 500)
    gateway.count_request("healthy", request.method, 200)
    notes = gateway.health_notes()
    return text("\n".join(["OK", *notes]) if notes else "OK")


async def ready(request: Request) -> Response:
    gateway = request.app.state.gateway
    if not gateway.ready:
        gateway.count_request("ready", request.method, 503)
        return text_error("not ready: restoring the persisted state", 503)
    gateway.count_request("ready", request.method, 200)
    return text("OK")


async def quit_(request: Request) -> Response:
    gateway = request.app.state.gateway
    if request.method == "GET":
        return text("Only POST or PUT requests allowed.", 405)
    if not gateway.settings.enable_lifecycle:
        return text("Lifecycle API is not enabled.", 403)
    gateway.request_shutdown()
    return text("Requesting termination... Goodbye!")
