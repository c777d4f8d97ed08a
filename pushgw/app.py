"""The Starlette application: routes under the route prefix, Go-shaped errors."""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pushgw.api import v1
from pushgw.gateway import Gateway
from pushgw.handler import metrics, misc, push, ui
from pushgw.handler.responses import empty, method_not_allowed, not_found, text_error

if TYPE_CHECKING:
    from pushgw.web.reload import LiveWebConfig

ALL_METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]


def build_app(gateway: Gateway, web_config: LiveWebConfig | None = None) -> Starlette:
    prefix = gateway.route_prefix
    settings = gateway.settings
    telemetry = posixpath.normpath("/" + f"{prefix}/{settings.telemetry_path}".lstrip("/"))
    api = prefix + "/api/v1"
    routes = [
        Route(prefix + "/-/healthy", misc.healthy, methods=["GET"]),
        Route(prefix + "/-/ready", misc.ready, methods=["GET"]),
        Route(prefix + "/-/quit", misc.quit_, methods=["PUT", "POST", "GET"]),
        Route(prefix + "/", ui.page, methods=["GET"]),
        Route(prefix + "/status", ui.page, methods=["GET"]),
        Route(prefix + "/metrics/job{rest:path}", push.push_or_delete, methods=ALL_METHODS),
        Route(telemetry, metrics.scrape, methods=["GET"]),
        Route(api + "/status", v1.status, methods=["GET"]),
        Route(api + "/metrics", v1.metrics, methods=["GET"]),
    ]
    if settings.enable_admin_api:
        routes.append(Route(api + "/admin/wipe", v1.wipe, methods=ALL_METHODS))
        routes.append(Route(api + "/admin/groups", v1.delete_groups, methods=ALL_METHODS))
    # Any other method on an API path: OPTIONS is answered (CORS), the rest are
    # 405 where a GET route exists and 404 elsewhere, as the official's router does.
    routes.append(Route(api + "/{path:path}", v1.options, methods=ALL_METHODS))
    if prefix:
        routes.append(Route("/-/quit", misc.quit_, methods=["GET"]))
    for route in routes:
        # Starlette adds HEAD to GET routes; the official's router does not.
        if route.methods is not None and route.methods == {"GET", "HEAD"}:
            route.methods.discard("HEAD")
    known_methods = {r.path: r.methods or set() for r in routes if "{" not in r.path}

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            if request.method == "OPTIONS":  # the official's router answers OPTIONS itself
                return empty(200, {"Allow": f"{allow}, OPTIONS"})
            return method_not_allowed(allow)
        if exc.status_code == 404:
            return _trailing_slash_redirect(request, known_methods) or not_found()
        return text_error(exc.detail, exc.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(
        routes=routes, exception_handlers={HTTPException: on_http_error}, lifespan=lifespan
    )
    app.router.redirect_slashes = False  # the official's rules: _trailing_slash_redirect
    app.state.gateway = gateway
    app.add_middleware(CleanPathMiddleware)
    if web_config is not None:  # outermost: the official's auth covers redirects too
        from pushgw.web.auth import WebConfigMiddleware  # only with --web.config.file (see server.py)

        app.add_middleware(WebConfigMiddleware, live=web_config, route_prefix=prefix)
    return app


def _trailing_slash_redirect(request: Request, known_methods: dict[str, set[str]]) -> Response | None:
    """Redirect ``/x/`` to ``/x`` (and back) when only the other one has a route for the method.

    Go's router does this; Starlette's own slash redirect is turned off.
    """
    path = request.url.path
    other = path[:-1] if path.endswith("/") else path + "/"
    if request.method not in known_methods.get(other, ()):
        return None
    location = quote(other) + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(location, status_code=301 if request.method == "GET" else 307)


def clean_path(path: str) -> str:
    """Go's ``path.Clean`` keeping a trailing slash, as Go's ServeMux applies it."""
    if path == "":
        return "/"
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


class CleanPathMiddleware:
    """301 to the cleaned path for ``//``, ``/./`` and ``/../`` (the official's ServeMux does this)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            cleaned = clean_path(path)
            if cleaned != path:
                query = scope.get("query_string", b"").decode("latin-1")
                location = quote(cleaned) + (f"?{query}" if query else "")
                await RedirectResponse(location, status_code=301)(scope, receive, send)
                return
        await self.app(scope, receive, send)

