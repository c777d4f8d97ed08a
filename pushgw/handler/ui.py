"""The web UI at ``<prefix>/`` and ``<prefix>/status``: what has been pushed, server-rendered.

Label values, metric names, help texts and values are user input: every one
goes through ``html.escape`` (quotes included, for attributes) and nothing
user-supplied ever lands inside the script, which only reads ``data-``
attributes through the DOM. The JSON API's ``group_json`` supplies the
metrics, so the page and ``/api/v1/metrics`` cannot disagree.

With 100k groups the page shows one page of them at a time, chosen on the
server from query parameters (so it works without JavaScript and its links
can be shared): ``match[]`` (selectors as in the API, ORed; empty ones are
ignored), ``sort`` (labels, oldest, newest: by last successful push),
``stale`` (a duration: groups whose last successful push is older are
marked), ``page`` and ``limit``. A bad parameter is a 400 page that says why
and lists nothing.
"""

from __future__ import annotations

import base64
import html
import math
import platform
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from pushgw import __version__
from pushgw.api.v1 import group_json, rfc3339
from pushgw.config import flag_values, format_duration, parse_duration
from pushgw.grouping import format_group
from pushgw.handler.ui_page import CSS, JS, PAGE
from pushgw.selector import LabelPredicate, SelectorError, parse_selectors
from pushgw.storage.listing import ORDERS, GroupPage, select_page
from pushgw.storage.store import Group, MetricStore

GROUP_KEYS = {"labels", "last_push_successful", "ttl_seconds", "expires_at"}
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
ORDER_NAMES = {"labels": "grouping labels", "oldest": "last push, oldest first",
               "newest": "last push, newest first"}


class QueryError(ValueError):
    """A query parameter of the page that cannot be used (a 400 page)."""


@dataclass
class View:
    """What the page's query parameters ask for."""

    selectors: list[str] = field(default_factory=list)
    order: str = ORDERS[0]
    stale: float | None = None  # seconds
    stale_text: str = ""
    page: int = 1
    limit: int = DEFAULT_LIMIT
    match: LabelPredicate | None = None

    def query(self, **changes: object) -> str:
        """This view's query string with ``changes``, defaults left out (for links)."""
        values = {"sort": self.order, "stale": self.stale_text, "page": self.page, "limit": self.limit,
                  **changes}
        pairs = [("match[]", s) for s in self.selectors]
        defaults = {"sort": ORDERS[0], "stale": "", "page": 1, "limit": DEFAULT_LIMIT}
        pairs += [(k, str(v)) for k, v in values.items() if v != defaults[k]]
        return "?" + urlencode(pairs)


def read_view(params) -> View:
    """The View of the query parameters; raises QueryError saying what is wrong."""
    view = View(selectors=[s for s in params.getlist("match[]") if s.strip()])
    if view.selectors:
        try:
            view.match = parse_selectors(view.selectors)
        except SelectorError as err:
            raise QueryError(str(err)) from None
    view.order = params.get("sort") or ORDERS[0]
    if view.order not in ORDERS:
        raise QueryError(f"unknown sort {view.order!r}: use one of {', '.join(ORDERS)}")
    view.stale_text = (params.get("stale") or "").strip()
    if view.stale_text:
        try:
            view.stale = parse_duration(view.stale_text)
        except ValueError as err:
            raise QueryError(f"stale: {err}") from None
        if view.stale <= 0:
            raise QueryError(f"stale: {view.stale_text!r} must be a positive duration such as 1h")
    view.page = _number(params, "page", 1, 1, 10**9)
    view.limit = _number(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return view


def _number(params, name: str, default: int, low: int, high: int) -> int:
    text = params.get(name) or ""
    if not text:
        return default
    if not text.isdecimal() or not low <= int(text) <= high:
        raise QueryError(f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


async def page(request: Request) -> Response:
    """The status page (the official serves the same page at ``/`` and ``/status``)."""
    gateway = request.app.state.gateway
    await gateway.fresh()
    started = time.perf_counter()
    try:
        view, error = read_view(request.query_params), ""
    except QueryError as err:
        view, error = View(), str(err)
    code = 400 if error else 200
    gateway.count_request("status", request.method, code)
    nonce = secrets.token_urlsafe(16)
    body = render_page(gateway, nonce, time.time(), view, error)
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
           "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'self'")
    # Server-Timing: what the page cost the server, for benchmarks/ui_page.py and browsers' tools.
    timing = f"page;dur={(time.perf_counter() - started) * 1000:.2f}"
    return Response(body, status_code=code, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": csp, "Cache-Control": "no-store",
                             "Server-Timing": timing})


def render_page(gateway, nonce: str, now: float, view: View, error: str = "") -> str:
    store: MetricStore = gateway.store
    stale_before = None if view.stale is None else now - view.stale
    offset = (view.page - 1) * view.limit
    if error:
        listing = GroupPage(len(store.groups), 0, 0, [])
    else:
        listing = select_page(store, view.match, view.order, offset, view.limit, stale_before)
    admin = gateway.settings.enable_admin_api
    wipe = ""
    if admin:
        disabled = "" if listing.total else " disabled"
        wipe = ('<button class="wipe" data-action="wipe" data-path="api/v1/admin/wipe"'
                f"{disabled}>Delete all groups</button>")
    if not listing.total:
        empty = "No metrics have been pushed."
    elif error:
        empty = "Fix the query to list groups."
    elif not listing.matching:
        empty = "No group matches the selector."
    else:
        empty = "No groups on this page."
    return PAGE.format(
        nonce=_e(nonce), css=CSS, js=JS, wipe=wipe,
        group_count=_plural(listing.total, "group"),
        filter=render_filter(view),
        error=f'<p class="error" id="query-error">{_e(error)}</p>' if error else "",
        summary=render_summary(view, listing, offset, admin and not error),
        pager=render_pager(view, listing),
        empty=_e(empty),
        empty_hidden=" hidden" if listing.groups else "",
        groups="\n".join(render_group(store, g, offset + i, now, stale_before)
                         for i, g in enumerate(listing.groups)),
        status=render_status(gateway),
        now=_e(rfc3339(now)),
    )


def render_filter(view: View) -> str:
    """The form: selector(s), sort, stale age; submitting it is a GET of this page."""
    inputs = "".join(
        f'<input name="match[]" class="selector" value="{_e(s)}" size="48" spellcheck="false" '
        'placeholder="{job=&quot;batch&quot;,instance=~&quot;worker-.*&quot;}">'
        for s in view.selectors or [""])
    options = "".join(f'<option value="{o}"{" selected" if o == view.order else ""}>{ORDER_NAMES[o]}</option>'
                      for o in ORDERS)
    limit = f'<input type="hidden" name="limit" value="{view.limit}">' if view.limit != DEFAULT_LIMIT else ""
    return f"""<form class="filter" id="filter" method="get">
<label>Selector {inputs}</label>
<label>Sort <select name="sort">{options}</select></label>
<label>Stale after <input name="stale" value="{_e(view.stale_text)}" size="6" placeholder="e.g. 1h"></label>
{limit}<button type="submit">Apply</button> <a href="?">Reset</a>
</form>"""


def render_summary(view: View, listing: GroupPage, offset: int, can_delete: bool) -> str:
    """Counts (shown, matching, total, stale) and the button deleting what the selector matches."""
    shown = (f"{offset + 1}&ndash;{offset + len(listing.groups)}" if listing.groups else "none")
    noun = "matching groups" if view.match else "groups"
    text = (f'Showing {shown} of <b id="matching-count">{listing.matching}</b> {noun} '
            f'(<span id="total-count">{listing.total}</span> in total)')
    if view.stale is not None:
        text += (f'; <span id="stale-count">{listing.stale}</span> stale '
                 f"(no successful push for {_e(format_duration(view.stale))})")
    button = ""
    if can_delete and view.match and listing.matching:
        path = "api/v1/admin/groups?" + urlencode([("match[]", s) for s in view.selectors])
        button = (f' <button class="delete-matching" data-action="delete-matching" data-path="{_e(path)}" '
                  f'data-selector="{_e(" or ".join(view.selectors))}">'
                  f"Delete the {_plural(listing.matching, 'matching group')}</button>")
    return (f'<p class="summary" id="counts" data-total="{listing.total}" '
            f'data-matching="{listing.matching}">{text}.{button}</p>')


def render_pager(view: View, listing: GroupPage) -> str:
    pages = max(1, -(-listing.matching // view.limit))
    if pages == 1 and view.page == 1:
        return ""
    prev = (f'<a rel="prev" href="{_e(view.query(page=view.page - 1))}">&larr; Previous</a>'
            if view.page > 1 else "")
    next_ = (f'<a rel="next" href="{_e(view.query(page=view.page + 1))}">Next &rarr;</a>'
             if view.page < pages else "")
    return f'<nav class="pager">{prev} <span>Page {view.page} of {pages}</span> {next_}</nav>'


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def render_group(store: MetricStore, group: Group, index: int, now: float,
                 stale_before: float | None = None) -> str:
    """One group: its labels, times, TTL, delete button and (collapsed) metrics."""
    stale = stale_before is not None and group.push_time < stale_before
    labels = "".join(
        f'<span class="label {_e(name) if name in ("job", "instance") else ""}">'
        f"{_e(name)}=&quot;{_e(value)}&quot;</span>"
        for name, value in _sorted_labels(group.labels))
    failed = "" if group.last_push_successful else '<span class="failed">Last push failed!</span>'
    if stale:
        failed += '<span class="stale-mark">Stale</span>'
    problem = (f'<p class="problem">Kept out of /metrics: {_e(group.problem)}</p>'
               if group.problem else "")
    data = group_json(store, group)
    families = [(name, family) for name, family in data.items() if name not in GROUP_KEYS]
    family_html = "\n".join(render_family(name, family, name in group.quarantined)
                            for name, family in sorted(families))
    return f"""<section class="group{' stale' if stale else ''}" id="group-{index}" data-name="{_e(format_group(group.labels))}">
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
