"""PUT, POST and DELETE on ``/metrics/job/<job>{/<label>/<value>}``."""

from __future__ import annotations

import logging
import time
from urllib.parse import quote, unquote_to_bytes

from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response

from pushgw.config import parse_duration
from pushgw.grouping import BASE64_SUFFIX, GroupingError, format_group, parse_grouping_labels
from pushgw.handler.body import BodyError, read_body
from pushgw.handler.responses import empty, method_not_allowed, not_found, text_error
from pushgw.storage.limits import LimitExceeded
from pushgw.storage.store import PushRejected
from pushgw.storage.writer import PersistenceError

log = logging.getLogger("pushgw.push")

PUSH_METHODS = ("PUT", "POST", "DELETE")
TTL_HEADER = "Pushgateway-TTL"


async def push_or_delete(request: Request) -> Response:
    gateway = request.app.state.gateway
    start = time.perf_counter()
    method = request.method
    response = await _handle(request, gateway)
    handler = "delete" if method == "DELETE" else "push"
    gateway.count_request(handler, method, response.status_code)
    if handler == "push" and method in PUSH_METHODS:
        metrics = gateway.metrics
        metrics.push_duration.labels(method.lower()).observe(time.perf_counter() - start)
        metrics.push_size.labels(method.lower()).observe(_request_size(request))
    return response


async def _handle(request: Request, gateway) -> Response:
    prefix = gateway.route_prefix + "/metrics/job"
    try:
        path = unquote_to_bytes(request.scope.get("raw_path") or request.scope["path"]).decode("utf-8")
    except UnicodeDecodeError:
        return _refuse(gateway, request, repr(request.scope.get("raw_path")), "bad_grouping_key",
                       "URL path is not valid UTF-8", 400)
    rest = path[len(prefix):] if path.startswith(prefix) else request.path_params["rest"]
    job_is_base64 = rest.startswith(BASE64_SUFFIX)
    if job_is_base64:
        rest = rest[len(BASE64_SUFFIX):]
    if rest == "/" and not job_is_base64:
        # The official's router redirects this trailing slash (not the @base64 one).
        return RedirectResponse(quote(prefix), status_code=301 if request.method == "GET" else 307)
    if not rest.startswith("/") or rest == "/":
        return not_found()
    if request.method == "OPTIONS":  # the official's router answers OPTIONS itself
        return empty(200, {"Allow": "DELETE, OPTIONS, POST, PUT"})
    if request.method not in PUSH_METHODS:
        return method_not_allowed("PUT, POST, DELETE")
    job, slash, labels_path = rest[1:].partition("/")
    try:
        grouping = parse_grouping_labels(
            job, job_is_base64, slash + labels_path, gateway.settings.enable_utf8_names
        )
    except GroupingError as err:
        return _refuse(gateway, request, path, "bad_grouping_key", str(err), 400)
    group = format_group(grouping)

    if request.method == "DELETE":
        try:
            await gateway.delete(grouping)
        except PersistenceError as err:
            return _not_persisted(gateway, request, group, err)
        return empty(202)

    settings = gateway.settings
    try:
        ttl = _ttl(request.headers.get(TTL_HEADER))
        body = await read_body(request, settings.max_body_size, settings.read_timeout)
        prepared = await gateway.preparer.prepare(
            body,
            request.headers.get("content-encoding", ""),
            request.headers.get("content-type", ""),
            grouping,
            gateway.store.clock(),
            settings.enable_utf8_names,
            gateway.store.limits,
            settings.max_decompressed_size,
        )
        quarantined = await gateway.push(grouping, prepared, request.method == "PUT", ttl)
    except (BodyError, LimitExceeded) as err:
        close = {"Connection": "close"} if isinstance(err, BodyError) and err.unread_body else None
        return _refuse(gateway, request, group, err.reason, str(err), err.status, close)
    except ClientDisconnect:  # nothing was stored; there is no one left to answer
        return _refuse(gateway, request, group, "client_disconnected", "client disconnected", 400)
    except PushRejected as err:
        unchecked = not gateway.store.check_consistency
        message = f"pushed metrics are invalid or inconsistent with existing metrics: {err}"
        return _refuse(gateway, request, group, "inconsistent", message, 202 if unchecked else 400)
    except PersistenceError as err:
        return _not_persisted(gateway, request, group, err)
    if not gateway.store.check_consistency:
        if quarantined:
            gateway.metrics.refusals.labels("quarantined").inc()
            log.error(
                "inconsistent push stored but kept out of /metrics",
                extra={"group": group, "method": request.method, "err": quarantined},
            )
        return empty(202)
    return empty(200)


def _refuse(gateway, request: Request, group: str, reason: str, message: str, status: int,
            headers: dict[str, str] | None = None) -> Response:
    """One log line and one count per refused push; the answer says why."""
    gateway.metrics.refusals.labels(reason).inc()
    log.log(
        logging.ERROR if reason in ("inconsistent", "persistence") else logging.INFO,
        "push refused",
        extra={"group": group, "method": request.method, "reason": reason, "err": message},
    )
    if status == 202:  # --push.disable-consistency-check: refused, but the official says 202
        return empty(202)
    return text_error(message, status, headers)


def _not_persisted(gateway, request: Request, group: str, err: PersistenceError) -> Response:
    message = f"could not persist the change, nothing was changed: {err}"
    return _refuse(gateway, request, group, "persistence", message, 503)


def _ttl(header: str | None) -> float | None:
    """The per-push time to live from the ``Pushgateway-TTL`` header (None: the default)."""
    if header is None:
        return None
    try:
        ttl = parse_duration(header.strip())
    except ValueError as err:
        raise BodyError(f"invalid {TTL_HEADER} header {header!r}: {err}", reason="bad_ttl") from None
    if ttl < 0:
        raise BodyError(f"invalid {TTL_HEADER} header {header!r}: must not be negative", reason="bad_ttl")
    return ttl


def _request_size(request: Request) -> int:
    """Approximate request size, as promhttp counts it: method, URL, protocol, header
    names and values (Host's value only), and the announced body length."""
    scope = request.scope
    target = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    size = len(scope["method"]) + len(target) + (len(query) + 1 if query else 0)
    size += len("HTTP/") + len(scope.get("http_version", ""))
    for name, value in scope["headers"]:
        size += len(value) if name == b"host" else len(name) + len(value)
    length = request.headers.get("content-length", "")
    return size + (int(length) if length.isdigit() else 0)
