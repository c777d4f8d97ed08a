"""The web UI at ``<prefix>/`` and ``<prefix>/status``: what has been pushed, server-rendered.

Label values, metric names, help texts and values are user input: every one
goes through ``html.escape`` (quotes included, for attributes) and nothing
user-supplied ever lands inside the script, which only reads ``data-``
attributes through the DOM. The JSON API's ``group_json`` supplies the
metrics, so the page and ``/api/v1/metrics`` cannot disagree.
"""

from __future__ import annotations

import base64
import html
import math
import platform
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

from pushgw import __version__
from pushgw.api.v1 import group_json, rfc3339
from pushgw.config import flag_values, format_duration
from pushgw.grouping import format_group
from pushgw.handler.ui_page import CSS, JS, PAGE
from pushgw.storage.store import Group, MetricStore

GROUP_KEYS = {"labels", "last_push_successful", "ttl_seconds", "expires_at"}


async def page(request: Request) -> Response:
    """The status page (the official serves the same page at ``/`` and ``/status``)."""
    gateway = request.app.state.gateway
    await gateway.fresh()
    gateway.count_request("status", request.method, 200)
    nonce = secrets.token_urlsafe(16)
    body = render_page(gateway, nonce, time.time())
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
           "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'")
    return Response(body, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"})


def render_page(gateway, nonce: str, now: float) -> str:
    store: MetricStore = gateway.store
    groups = sorted(store.groups.values(), key=lambda g: _sorted_labels(g.labels))
    wipe = ""
    if gateway.settings.enable_admin_api:
        disabled = "" if groups else " disabled"
        wipe = ('<button class="wipe" data-action="wipe" data-path="api/v1/admin/wipe"'
                f"{disabled}>Delete all groups</button>")
    return PAGE.format(
        nonce=_e(nonce), css=CSS, js=JS, wipe=wipe,
        group_count=f"{len(groups)} group{'' if len(groups) == 1 else 's'}",
        empty_hidden=" hidden" if groups else "",
        groups="\n".join(render_group(store, g, i, now) for i, g in enumerate(groups)),
        status=render_status(gateway),
        now=_e(rfc3339(now)),
    )


def render_group(store: MetricStore, group: Group, index: int, now: float) -> str:
    """One group: its labels, times, TTL, delete button and (collapsed) metrics."""
    labels = "".join(
        f'<span class="label {_e(name) if name in ("job", "instance") else ""}">'
        f"{_e(name)}=&quot;{_e(value)}&quot;</span>"
        for name, value in _sorted_labels(group.labels))
    failed = "" if group.last_push_successful else '<span class="failed">Last push failed!</span>'
    problem = (f'<p class="problem">Kept out of /metrics: {_e(group.problem)}</p>'
               if group.problem else "")
    data = group_json(store, group)
    families = [(name, family) for name, family in data.items() if name not in GROUP_KEYS]
    family_html = "\n".join(render_family(name, family, name in group.quarantined)
                            for name, family in sorted(families))
    return f"""<section class="group" id="group-{index}" data-name="{_e(format_group(group.labels))}">
<div class="group-head"><div class="labels">{labels}</div>{failed}
<button class="delete" data-action="delete" data-path="{_e(delete_path(group.labels))}">Delete group</button></div>
<dl class="times">{render_times(group, now)}</dl>
{problem}<details class="metrics"><summary>{len(families)} metric famil{"y" if len(families) == 1 else "ies"}</summary>
{family_html}
</details>
</section>"""


def render_times(group: Group, now: float) -> str:
    """Last push, last failure, TTL and time to expiry."""
    rows = [("Last push", _when(group.push_time, now)),
            ("Last failure", _when(group.failure_time, now))]
    if group.ttl > 0:
        rows.append(("TTL", _e(format_duration(group.ttl))))
        left = group.expires_at - now
        rows.append(("Expires", f"in {_e(format_duration(max(0, round(left))))} "
                                f"(at {_e(rfc3339(group.expires_at))})"))
    else:
        rows.append(("TTL", "none (never expires)"))
    return "".join(f"<div><dt>{name}</dt><dd>{value}</dd></div>" for name, value in rows)


def render_family(name: str, family: dict, quarantined: bool) -> str:
    help_text = f' <span class="help">{_e(family["help"])}</span>' if family.get("help") else ""
    note = ' <span class="quarantined">(kept out of /metrics)</span>' if quarantined else ""
    rows = "\n".join(
        f"<tr><td>{_metric_labels(m['labels'])}</td><td class=\"value\">{_metric_value(m)}</td></tr>"
        for m in family["metrics"])
    return f"""<details class="family"><summary><b>{_e(name)}</b> <span class="type">{_e(family["type"])}</span>{help_text}{note} &middot; last pushed {_e(family["time_stamp"])}</summary>
<table><thead><tr><th>Labels</th><th>Value</th></tr></thead><tbody>
{rows}
</tbody></table></details>"""


def render_status(gateway) -> str:
    flags = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                    for k, v in sorted(flag_values(gateway.settings).items()))
    build = (f"<tr><th>version</th><td>{_e(__version__)}</td></tr>"
             f"<tr><th>python</th><td>{_e(platform.python_version())}</td></tr>"
             f"<tr><th>started</th><td>{_e(rfc3339(gateway.started_at))}</td></tr>")
    return f"<table><tbody>{build}</tbody></table>\n<table><tbody>{flags}</tbody></table>"


def delete_path(labels: dict[str, str]) -> str:
    """The group's push path, relative to the page, every value @base64 (``=`` for empty)."""
    parts = [f"metrics/job@base64/{_b64(labels['job'])}"]
    parts += [f"{name}@base64/{_b64(value)}" for name, value in sorted(labels.items()) if name != "job"]
    return "/".join(parts)


def _b64(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=") or "="


def _sorted_labels(labels: dict[str, str]) -> list[tuple[str, str]]:
    """job first, then by name, as the official shows grouping labels."""
    return sorted(labels.items(), key=lambda kv: (kv[0] != "job", kv[0]))


def _metric_labels(labels: dict[str, str]) -> str:
    return " ".join(f'<span class="label">{_e(k)}=&quot;{_e(v)}&quot;</span>'
                    for k, v in sorted(labels.items()))


def _metric_value(metric: dict) -> str:
    if "value" in metric:
        return _e(metric["value"])
    lines = []
    for q, v in metric.get("quantiles", {}).items():
        lines.append(f"quantile {q}: {v}")
    for le, c in metric.get("buckets", {}).items():
        lines.append(f"le {le}: {c}")
    lines += [f"count: {metric.get('count')}", f"sum: {metric.get('sum')}"]
    return _e("\n".join(lines))


def _when(timestamp: float, now: float) -> str:
    if not timestamp or not math.isfinite(timestamp):
        return "never"
    ago = format_duration(max(0, round(now - timestamp)))
    return f"{_e(rfc3339(timestamp))} ({_e(ago)} ago)"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
