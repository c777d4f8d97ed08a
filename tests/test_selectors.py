"""Selectors over grouping labels: the parser, the store, and the API through a real pushgw.

``GET /api/v1/metrics?match[]=`` lists the matching groups;
``DELETE /api/v1/admin/groups?match[]=`` deletes them (admin API and admin
role only), durably; a missing or bad selector deletes nothing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import bcrypt
import pytest
import re2
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from pushgw.selector import SelectorError, parse_selector, parse_selectors
from pushgw.storage.listing import ORDERS, select_page
from pushgw.storage.store import MetricStore, PushRejected
from pushgw.model import GAUGE, Metric, MetricFamily
from tests.servers import start_pushgw

GROUPS = [
    {"job": "batch", "instance": "worker-1"},
    {"job": "batch", "instance": "worker-22"},
    {"job": "batch", "instance": "db-1"},
    {"job": "batch"},
    {"job": "web", "instance": "worker-1", "zone": "eu"},
    {"job": "cron/nightly", "instance": "a\nb"},
]


def matching(selectors: list[str], groups=GROUPS) -> list[dict[str, str]]:
    match = parse_selectors(selectors)
    return [g for g in groups if match(g)]


# --- the parser --------------------------------------------------------------

@pytest.mark.parametrize("selectors, expected", [
    (['{job="batch"}'], [0, 1, 2, 3]),
    (['{job="batch",instance=~"worker-.*"}'], [0, 1]),
    (['{job="batch",instance=~"worker-."}'], [0]),  # anchored: not worker-22
    (["{instance=~'worker'}"], []),  # anchored at both ends
    (['{instance!~"worker-.*", job=~"batch|cron/.*"}'], [2, 3, 5]),
    (['{job="batch",instance=""}'], [3]),  # a missing label reads as ""
    (['{zone!=""}'], [4]),
    (['{instance=~"a.b"}'], [5]),  # "." matches a newline, as Prometheus' (?s:...)
    (['{instance="a\\nb"}'], [5]),
    (['{job=`cron/nightly`}'], [5]),
    (['{job="batch",instance="db-1"}', '{zone="eu"}'], [2, 4]),  # ORed
    (['  { job = "web" , } '], [4]),  # spaces and a trailing comma
    (['{job=~"(?i)WEB"}'], [4]),
    (['{"zone"="eu"}'], [4]),  # a quoted label name
    (['{instance=~"worker-\\\\d+"}'], [0, 1, 4]),  # the regex \d+
    (['{job=~"b\\x61tch|w\\u0065b"}'], [0, 1, 2, 3, 4]),  # string escapes before the regex
])
def test_selectors_match_as_prometheus_matchers(selectors, expected):
    assert matching(selectors) == [GROUPS[i] for i in expected]


@pytest.mark.parametrize("text, reason", [
    ("", "empty selector"),
    ("   ", "empty selector"),
    ("{}", "would match every group"),
    ('{job=~".*"}', "would match every group"),
    ('{job="",instance!="x"}', "would match every group"),
    ("up", "no metric name"),
    ('up{job="a"}', "no metric name"),
    ('{"up"}', "no metric name"),
    ('{__name__="up"}', "no metric name"),
    ('{job="a"', "unclosed '{'"),
    ('{job="a}', "unterminated quoted string"),
    ('{job="a\nb"}', "unterminated quoted string"),
    ("{job=`a}", "unterminated raw string"),
    ('{job=a}', "expected a quoted value"),
    ('{job=="a"}', "expected a quoted value"),
    ('{job~="a"}', "expected one of"),
    ('{job="a" instance="b"}', "expected ',' or '}'"),
    ('{job="a"} {x="y"}', "unexpected text after"),
    ('{0job="a"}', "expected a label name"),
    ('{job="\\q"}', "unknown escape sequence \\q"),
    ('{job="\\x4"}', "illegal character in escape sequence"),
    ('{job="\\ud800"}', "invalid Unicode code point"),
    ('{job="\\xff"}', "not valid UTF-8"),
    ("{job='\\\"'}", "unknown escape sequence"),  # \" only inside double quotes, as in PromQL
    ('{job=~"a)|(b"}', "invalid regex"),  # must not escape the anchoring
    ('{job=~"(?=a)b"}', "invalid regex"),  # no lookahead in RE2 (Python's re has one)
    ('{job=~"(a)\\\\1"}', "invalid regex"),  # no backreferences either
    ('{job=~"x{1001}"}', "invalid regex"),  # RE2's and Go's repeat limit
    ('{job=~"\\\\C"}', "\\C (any byte) is not supported"),
])
def test_bad_selectors_are_refused_with_the_reason(text, reason):
    with pytest.raises(SelectorError, match=None) as err:
        parse_selector(text)
    assert reason in str(err.value)


def test_no_selector_at_all_is_refused():
    with pytest.raises(SelectorError, match="no selector given"):
        parse_selectors([])


def test_regexes_take_linear_time():
    """A classic catastrophic pattern for a backtracking engine answers at once with RE2."""
    match = parse_selectors(['{job=~"(a|a)*c"}'])
    assert not match({"job": "a" * 5000})


label_values = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(value=label_values, other=label_values)
def test_any_value_quoted_as_json_round_trips(value, other):
    """JSON's escapes are a subset of PromQL's: every value survives quoting."""
    quoted = json.dumps(value, ensure_ascii=False)
    selector = parse_selector("{job=" + quoted + "}" if value else "{job=" + quoted + ',x!=""}')
    assert selector.matchers[0].value == value
    assert selector.matches({"job": value, "x": "1"})
    assert selector.matches({"job": other, "x": "1"}) == (other == value)
    escaped = parse_selector("{job=~" + json.dumps(re2.escape(value), ensure_ascii=False) + ',x!=""}')
    assert escaped.matches({"job": value, "x": "1"})
    assert escaped.matches({"job": other, "x": "1"}) == (other == value)


names = st.sampled_from(["job", "instance", "zone"])
small_values = st.sampled_from(["", "a", "b", "ab"])


@settings(max_examples=200, deadline=None)
@given(labels=st.dictionaries(names, small_values.filter(bool)),
       matchers=st.lists(st.tuples(names, st.sampled_from(["=", "!=", "=~", "!~"]), small_values),
                         min_size=1, max_size=3))
def test_matchers_and_their_absent_label_rule(labels, matchers):
    """Each matcher compared with a plain reference: a missing label is ""."""
    text = "{" + ",".join(f'{n}{op}"{v}"' for n, op, v in matchers) + "}"
    try:
        selector = parse_selector(text)
    except SelectorError as err:
        assert "would match every group" in str(err)
        assert all(_reference({}, *m) for m in matchers)
        return
    assert selector.matches(labels) == all(_reference(labels, *m) for m in matchers)


def _reference(labels: dict[str, str], name: str, op: str, value: str) -> bool:
    actual = labels.get(name, "")
    equal = actual == value  # the values have no regex metacharacters
    return equal if op in ("=", "=~") else not equal


# --- the store ---------------------------------------------------------------

def test_store_deletes_what_the_predicate_matches_when_applied():
    store = MetricStore()
    family = MetricFamily("up", GAUGE, "", [Metric(labels={}, value=1.0)])
    for labels in GROUPS:
        store.push(labels, {"up": family}, replace=True)
    seen = []

    def predicate(labels):
        seen.append(dict(labels))
        return labels.get("instance", "").startswith("worker-")

    changes = store.delete_matching(predicate)
    assert len(seen) == len(GROUPS)  # judged on the groups stored at that moment
    assert by_key(dict(c.key) for c in changes) == by_key(GROUPS[i] for i in (0, 1, 4))
    assert all(c.before is not None and c.names is None for c in changes)
    assert by_key(g.labels for g in store.groups.values()) == by_key(GROUPS[i] for i in (2, 3, 5))
    assert store.delete_matching(predicate) == []
    for change in reversed(changes):  # the writer's undo puts them back
        store.undo(change)
    assert len(store.groups) == len(GROUPS)


# --- one page for the UI ----------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["push", "fail", "delete", "look"]),
                              st.integers(0, 11)), max_size=60),
       order=st.sampled_from(ORDERS), offset=st.integers(0, 8), limit=st.integers(1, 5),
       selector=st.sampled_from([None, '{instance=~"i-[0-5]"}', '{job="b"}']))
def test_a_page_is_the_slice_of_a_full_sort(ops, order, offset, limit, selector):
    """Whatever was created, deleted and created again (the label order is kept
    incrementally), a page equals sorting every matching group and slicing."""
    clock = iter(range(1, 10_000))
    store = MetricStore(clock=lambda: float(next(clock)))
    family = MetricFamily("up", GAUGE, "", [Metric(labels={}, value=1.0)])
    stamped = MetricFamily("up", GAUGE, "", [Metric(labels={}, value=1.0, timestamp_ms=1)])
    for op, n in ops:
        labels = {"job": "ab"[n % 2], "instance": f"i-{n}"}
        if op == "push":
            store.push(labels, {"up": family}, replace=True)
        elif op == "fail":
            with pytest.raises(PushRejected):  # still creates the group, never pushed successfully
                store.push(labels, {"up": stamped}, replace=True)
        elif op == "delete":
            store.delete(labels)
        else:
            select_page(store, None, "labels", 0, 1)  # builds the label order midway
    match = None if selector is None else parse_selectors([selector])
    stale_before = 20.0
    page = select_page(store, match, order, offset, limit, stale_before)
    groups = [g for g in store.groups.values() if match is None or match(g.labels)]
    if order == "labels":
        groups.sort(key=lambda g: (g.labels["job"], sorted(g.labels.items())))
    elif order == "oldest":
        groups.sort(key=lambda g: g.push_time)
    else:  # equal times (never pushed successfully): the later created first
        groups = sorted(reversed(groups), key=lambda g: g.push_time, reverse=True)
    assert [g.labels for g in page.groups] == [g.labels for g in groups[offset:offset + limit]]
    assert page.total == len(store.groups) and page.matching == len(groups)
    assert page.stale == sum(1 for g in groups if g.push_time < stale_before)


# --- HTTP through a real pushgw ---------------------------------------------

def push_all(url: str) -> None:
    for labels in GROUPS:
        path = f"{url}/metrics/job@base64/{b64(labels['job'])}"
        path += "".join(f"/{k}@base64/{b64(v)}" for k, v in sorted(labels.items()) if k != "job")
        assert requests.put(path, data=b"up 1\n", timeout=5).status_code == 200


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=") or "="


def stored(url: str, **kwargs) -> list[dict[str, str]]:
    r = requests.get(url + "/api/v1/metrics", timeout=5, **kwargs)
    assert r.status_code == 200
    return sorted((g["labels"] for g in r.json()["data"]), key=lambda g: sorted(g.items()))


def by_key(groups):
    return sorted(groups, key=lambda g: sorted(g.items()))


def test_list_and_delete_by_selector(clean_pushgw):
    url = clean_pushgw.url
    push_all(url)
    selector = {"match[]": ['{job="batch",instance=~"worker-.*"}', '{zone="eu"}']}
    listed = requests.get(url + "/api/v1/metrics", params=selector, timeout=5).json()["data"]
    assert by_key(g["labels"] for g in listed) == by_key(GROUPS[i] for i in (0, 1, 4))
    assert all(g["last_push_successful"] and "up" in g and "push_time_seconds" in g for g in listed)

    r = requests.delete(url + "/api/v1/admin/groups", params=selector, timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "success", "data": {"deleted": 3}}
    assert stored(url) == by_key(GROUPS[i] for i in (2, 3, 5))
    assert b'job="web"' not in requests.get(url + "/metrics", timeout=5).content
    r = requests.delete(url + "/api/v1/admin/groups", params=selector, timeout=5)
    assert r.json()["data"] == {"deleted": 0}
    assert requests.put(url + "/api/v1/admin/groups", params=selector, timeout=5).status_code == 405


@pytest.mark.parametrize("params, reason", [
    (None, "no selector given"),
    ({"match[]": ""}, "empty selector"),
    ({"match[]": "{}"}, "would match every group"),
    ({"match[]": ['{job="batch"}', '{job=~".*"}']}, "would match every group"),
    ({"match[]": 'up{job="batch"}'}, "no metric name"),
    ({"match[]": '{job=~"("}', }, "invalid regex"),
    ({"match": '{job="batch"}'}, "no selector given"),  # match without [] is not a selector
])
def test_a_bad_or_missing_selector_deletes_nothing(clean_pushgw, params, reason):
    url = clean_pushgw.url
    push_all(url)
    r = requests.delete(url + "/api/v1/admin/groups", params=params, timeout=5)
    assert r.status_code == 400
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert reason in body["error"] and "nothing was deleted" in body["error"]
    assert stored(url) == by_key(GROUPS)
    if params and "match[]" in params:
        listing = requests.get(url + "/api/v1/metrics", params=params, timeout=5)
        assert listing.status_code == 400 and reason in listing.json()["error"]


def test_delete_by_selector_needs_the_admin_api(make_pushgw):
    server = make_pushgw()
    push_all(server.url)
    r = requests.delete(server.url + "/api/v1/admin/groups", params={"match[]": '{job="batch"}'}, timeout=5)
    assert r.status_code == 404
    assert len(stored(server.url)) == len(GROUPS)
    assert stored(server.url, params={"match[]": '{job="web"}'}) == [GROUPS[4]]  # listing needs no admin


def test_delete_by_selector_is_durable(tmp_path):
    db = tmp_path / "pushgw.db"
    server = start_pushgw("--web.enable-admin-api", f"--persistence.file={db}")
    try:
        push_all(server.url)
        r = requests.delete(server.url + "/api/v1/admin/groups",
                            params={"match[]": '{job="batch"}'}, timeout=5)
        assert r.json()["data"]["deleted"] == 4
        assert server.stop() == 0
    finally:
        server.close()
    server = start_pushgw("--web.enable-admin-api", f"--persistence.file={db}")
    try:
        assert stored(server.url) == by_key(GROUPS[i] for i in (4, 5))
    finally:
        server.close()


def test_a_deletion_that_cannot_be_persisted_deletes_nothing(tmp_path):
    """With the database file gone, the deletion is refused (503) and undone in memory."""
    db = tmp_path / "pushgw.db"
    server = start_pushgw("--web.enable-admin-api", f"--persistence.file={db}")
    try:
        push_all(server.url)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        r = requests.delete(server.url + "/api/v1/admin/groups", params={"match[]": '{job="batch"}'}, timeout=5)
        assert r.status_code == 503
        assert r.json()["errorType"] == "unavailable" and "nothing was deleted" in r.json()["error"]
        assert stored(server.url) == by_key(GROUPS)
    finally:
        server.close()


def test_delete_by_selector_needs_the_admin_role(tmp_path):
    users = {"ops": ("ops-pw", None), "ci": ("ci-pw", "push"), "grafana": ("grafana-pw", "read")}
    lines = ["basic_auth_users:"]
    lines += [f"  {u}: {bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}" for u, (p, _) in users.items()]
    lines += ["pushgw_authorization:", "  ops: admin", "  ci: push", "  grafana: read"]
    config = tmp_path / "web.yml"
    config.write_text("\n".join(lines) + "\n")
    token = base64.b64encode(b"ops:ops-pw").decode()
    server = start_pushgw("--web.enable-admin-api", f"--web.config.file={config}",
                          ready_headers={"Authorization": f"Basic {token}"})
    try:
        assert requests.put(server.url + "/metrics/job/batch", data=b"up 1\n", auth=("ci", "ci-pw"),
                            timeout=5).status_code == 200
        url = server.url + "/api/v1/admin/groups"
        selector = {"match[]": '{job="batch"}'}
        for user in ("ci", "grafana"):
            r = requests.delete(url, params=selector, auth=(user, users[user][0]), timeout=5)
            assert r.status_code == 403 and "needs the admin role" in r.text
        assert requests.delete(url, params=selector, timeout=5).status_code == 401
        assert stored(server.url, auth=("grafana", "grafana-pw")) == [{"job": "batch"}]
        r = requests.delete(url, params=selector, auth=("ops", "ops-pw"), timeout=5)
        assert r.status_code == 200 and r.json()["data"]["deleted"] == 1
    finally:
        server.close()
