"""Every query of the Grafana dashboard and of the alert rules finds data in a real Prometheus.

A real Prometheus (Debian's ``prometheus``) scrapes a real pushgw as
deploy/prometheus/prometheus.yml does (job "pushgateway", honor_labels),
after pushes that make every series exist: PUT and POST pushes, kept going
while Prometheus scrapes so that rates have samples, and a failed push
(failure time past the last success). Grafana variables are substituted as
Grafana would with the dashboard's defaults and a 1 s scrape interval:

    $gateway_job     -> pushgateway   (its only value)
    $job             -> .*            (its "All" value)
    $__rate_interval -> 10s           (Grafana's minimum is 4 scrape intervals: 4s)

Dashboard panels must return finite values as written. Alert expressions
compare against thresholds that a fresh test cannot reach (an hour without
a push, 5000 groups), so for them every vector selector must find series
and the whole expression must be a valid query; the one whose condition the
pushes do meet (a failing push) must fire its expression.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time

import pytest
import requests
import yaml

from tests.servers import REPO_ROOT, start_prometheus, start_pushgw

DASHBOARD = REPO_ROOT / "deploy/grafana/dashboards/pushgw.json"
ALERTS = REPO_ROOT / "deploy/prometheus/alerts.yml"
VARIABLES = {"gateway_job": "pushgateway", "job": ".*", "__rate_interval": "10s"}
WAIT_SECONDS = 40.0

_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(r'\{[^}]*\}|"(?:[^"\\]|\\.)*"|\[[^\]]*\]|[A-Za-z_:][A-Za-z0-9_:]*|\S')
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def selectors(expr: str) -> list[str]:
    """The vector selectors of a PromQL expression (metric name and its {matchers})."""
    tokens = _TOKEN.findall(_GROUPING.sub(" ", expr))
    found = []
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token.startswith("{") and (i == 0 or not re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", tokens[i - 1])):
            found.append(token)  # a selector without a metric name
        elif re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", token) and token not in _KEYWORDS and following != "(":
            found.append(token + following if following.startswith("{") else token)
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(f"{p['title']} / {t['refId']}", substitute(t["expr"])) for p in panels for t in p.get("targets", [])]


def alert_rules() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def test_selectors_are_found():
    assert selectors('sum by (method) (rate(a_sum{job=~"x"}[1m])) / b') == ['a_sum{job=~"x"}', "b"]
    assert selectors("count(time() - push_time_seconds > 3600) or vector(0)") == ["push_time_seconds"]
    assert selectors('up{job="p"} == 0 or absent(up{job="p"})') == ['up{job="p"}', 'up{job="p"}']


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """(query function, push function) once Prometheus has scraped pushgw after pushes."""
    gateway = start_pushgw()
    config = "\n".join([
        "global:", "  scrape_interval: 1s", "  scrape_timeout: 1s", "  evaluation_interval: 1s",
        f"rule_files: ['{ALERTS}']",
        "scrape_configs:", "  - job_name: pushgateway", "    honor_labels: true",
        "    static_configs:", f"      - targets: ['127.0.0.1:{gateway.port}']",
    ]) + "\n"
    prometheus = start_prometheus(config, tmp_path_factory.mktemp("dashboard"), ready_timeout=20)
    session = requests.Session()
    session.trust_env = False

    def query(expr: str) -> list[dict]:
        r = session.get(prometheus.url + "/api/v1/query", params={"query": expr}, timeout=5)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", (expr, r.text[:300])
        return body["data"]["result"]

    def push() -> None:
        url = gateway.url + "/metrics/job"
        assert session.put(url + "/batch/instance/a", data=b"done 1\n").status_code == 200
        assert session.post(url + "/batch/instance/b", data=b"done 1\n").status_code == 200

    try:
        push()
        assert session.put(gateway.url + "/metrics/job/flaky", data=b"x 1\n").status_code == 200
        time.sleep(0.01)  # failure time strictly after the success time
        refused = session.put(gateway.url + "/metrics/job/flaky", data=b"# TYPE x counter\nx 1\nx 2\n")
        assert refused.status_code == 400
        # What the batch-job alerts read: a real `pushgw exec` report.
        report = subprocess.run(
            [sys.executable, "-m", "pushgw", "exec", "--gateway", gateway.url, "--job", "backup", "--", "true"],
            capture_output=True, text=True, timeout=60,
        )
        assert report.returncode == 0, report.stderr
        yield query, push
    finally:
        prometheus.close()
        gateway.close()


def _has_data(query, expr: str) -> str | None:
    """None when ``expr`` returns finite values, else what is wrong."""
    result = query(expr)
    if not result:
        return "no series"
    values = [float(r["value"][1]) for r in result]
    if not all(math.isfinite(v) for v in values):
        return f"non-finite values {values}"
    return None


def test_every_dashboard_query_and_alert_selector_finds_data(scraped):
    query, push = scraped
    checks = [(f"dashboard {name}", expr) for name, expr in dashboard_queries()]
    checks.append(("dashboard variable $job", "count by (job) (push_time_seconds)"))
    for name, expr in alert_rules():
        checks += [(f"alert {name}: selector {s}", s) for s in selectors(expr)]
    checks.append(("alert PushgatewayPushFailing (fires)", dict(alert_rules())["PushgatewayPushFailing"]))
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        push()  # pushes keep landing in the rate windows
        missing = {name: problem for name, expr in checks if (problem := _has_data(query, expr))}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, f"after {WAIT_SECONDS:.0f}s: {json.dumps(missing, indent=1)}"
    for name, expr in alert_rules():
        query(expr)  # valid PromQL (an empty answer is the healthy one)
    assert len(checks) > 20
