"""``/api/v1/status``, ``/api/v1/metrics``, ``/api/v1/admin/wipe`` and ``/api/v1/admin/groups``.

``match[]`` selectors (pushgw/selector.py) narrow ``/api/v1/metrics`` and
choose what ``DELETE /api/v1/admin/groups`` deletes; errors use the
official API's JSON shape (``status``, ``errorType``, ``error``).
"""

from __future__ import annotations

import datetime
import logging
import platform

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pushgw import __version__
from pushgw.api.native_histogram import api_buckets
from pushgw.config import flag_values
from pushgw.exposition.text_render import format_value
from pushgw.handler.responses import empty, method_not_allowed, not_found, text_error
from pushgw.model import HISTOGRAM, SUMMARY, Metric
from pushgw.selector import LabelPredicate, SelectorError, parse_selectors
from pushgw.storage.store import Group, MetricStore
from pushgw.storage.writer import PersistenceError

log = logging.getLogger("pushgw")

CORS_HEADERS = {
    "Access-Control-Allow-Headers": "Accept, Authorization, Content-Type, Origin",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Date",
    "Cache-Control": "no-cache, no-store, must-revalidate",
}


def _respond(data: object) -> Response:
    body = orjson.dumps({"status": "success", "data": data})
    return Response(body, media_type="application/json", headers=CORS_HEADERS)


def _error(kind: str, message: str, status: int) -> Response:
    """An error in the official API's shape (its ``respondError``)."""
    body = orjson.dumps({"status": "error", "errorType": kind, "error": message})
    return Response(body, status_code=status, media_type="application/json", headers=CORS_HEADERS)


def selectors_of(request: Request) -> LabelPredicate:
    """The ``match[]`` parameters as one predicate; raises SelectorError (none given is one too)."""
    return parse_selectors(request.query_params.getlist("match[]"))


async def status(request: Request) -> Response:
    gateway = request.app.state.gateway
    gateway.count_request("api/v1/status", request.method, 200)
    return _respond(
        {
            "flags": flag_values(gateway.settings),
            "start_time": rfc3339(gateway.started_at),
            "build_information": {
                "version": __version__,
                "revision": "",
                "branch": "",
                "buildUser": "",
                "buildDate": "",
                "goVersion": "",
                "pythonVersion": platform.python_version(),
            },
        }
    )


async def metrics(request: Request) -> Response:
    gateway = request.app.state.gateway
    match = None
    if "match[]" in request.query_params:
        try:
            match = selectors_of(request)
        except SelectorError as err:
            gateway.count_request("api/v1/metrics", request.method, 400)
            return _error("bad_data", str(err), 400)
    await gateway.fresh()
    gateway.count_request("api/v1/metrics", request.method, 200)
    store = gateway.store
    groups = store.groups.values()
    if match is not None:
        groups = [g for g in groups if match(g.labels)]
    return _respond([group_json(store, g) for g in groups])


async def options(request: Request) -> Response:
    """CORS pre-flight for every API path; other methods on unknown API paths are 404."""
    if request.method != "OPTIONS":
        if request.path_params["path"] in ("status", "metrics"):
            return method_not_allowed("GET, OPTIONS")
        return not_found()
    request.app.state.gateway.count_request("api/v1/options", request.method, 200)
    return Response(b"", headers=CORS_HEADERS)


async def wipe(request: Request) -> Response:
    gateway = request.app.state.gateway
    if request.method != "PUT":
        return method_not_allowed("PUT")
    try:
        await gateway.wipe()
    except PersistenceError as err:
        gateway.count_request("wipe", request.method, 503)
        return text_error(f"could not persist the wipe, nothing was deleted: {err}", 503)
    gateway.count_request("wipe", request.method, 202)
    return empty(202)


async def delete_groups(request: Request) -> Response:
    """Delete every group a ``match[]`` selector matches; answers how many went."""
    gateway = request.app.state.gateway
    if request.method != "DELETE":
        return method_not_allowed("DELETE")
    try:
        match = selectors_of(request)
    except SelectorError as err:
        gateway.count_request("delete_groups", request.method, 400)
        return _error("bad_data", f"nothing was deleted: {err}", 400)
    try:
        deleted = await gateway.delete_matching(match)
    except PersistenceError as err:
        gateway.count_request("delete_groups", request.method, 503)
        return _error("unavailable", f"could not persist the deletion, nothing was deleted: {err}", 503)
    gateway.count_request("delete_groups", request.method, 200)
    log.info("groups deleted by selector",
             extra={"selectors": " or ".join(request.query_params.getlist("match[]")), "count": deleted})
    return _respond({"deleted": deleted})


def group_json(store: MetricStore, group: Group) -> dict[str, object]:
    """One group as the official shows it: grouping labels, success flag, each family."""
    result: dict[str, object] = {
        "labels": group.labels,
        "last_push_successful": group.last_push_successful,
    }
    if group.ttl > 0:  # pushgw only: when the group goes if nobody pushes to it
        result["ttl_seconds"] = group.ttl
        result["expires_at"] = rfc3339(group.expires_at)
    for name, stored in (group.families | group.quarantined).items():
        family: dict[str, object] = {
            "time_stamp": rfc3339(stored.pushed_at),
            "type": stored.type.upper(),
        }
        if stored.help:
            family["help"] = stored.help
        family["metrics"] = [_metric_json(m, stored.type) for m in store.metrics_of(stored)]
        result[name] = family
    return result


def _metric_json(metric: Metric, kind: str) -> dict[str, object]:
    result: dict[str, object] = {"labels": metric.labels}
    if kind == SUMMARY:
        result["quantiles"] = {format_value(q): format_value(v) for q, v in metric.quantiles}
        result["count"] = str(metric.count)
        result["sum"] = format_value(metric.sum)
    elif kind == HISTOGRAM:
        result["sum"] = format_value(metric.sum)
        native = api_buckets(metric.native) if metric.native is not None else None
        if native is not None:
            result["buckets"], result["count"] = native
        else:
            result["buckets"] = {format_value(b): _count(c) for b, c in metric.buckets}
            result["count"] = _count(metric.count)
    else:
        result["value"] = format_value(metric.value)
    return result


def _count(count: int | float) -> str:
    """A count as Go's fmt.Sprint writes a uint64, or a float64 (float histograms)."""
    return str(count) if isinstance(count, int) else format_value(count)


def rfc3339(timestamp: float) -> str:
    """Go's RFC 3339 time with nanoseconds, trailing zeros dropped, in UTC."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"
