"""End to end against a real Prometheus server (issue 4).

pushgw runs on 127.0.0.1; two Prometheus servers of our own (never a system
service on :9090) scrape it every second with ``honor_labels: true``:

- ``om``: Prometheus with its default settings. Prometheus 2.x asks for
  OpenMetrics 1.0.0 first, so this one exercises pushgw's OpenMetrics
  exposition (on Prometheus >= 2.49 it is pinned with ``scrape_protocols``).
- ``proto``: Prometheus with native histograms enabled
  (``--enable-feature=native-histograms`` before 3.9,
  ``scrape_native_histograms: true`` from 3.8), which makes it ask for the
  delimited protobuf format first; only that format carries native histograms.

Each Prometheus scrapes pushgw through a recording pass-through (a few lines
of ``http.server`` on 127.0.0.1) that forwards the request verbatim and
remembers the ``Accept`` / ``Accept-Encoding`` Prometheus sent and the
``Content-Type`` / ``Content-Encoding`` pushgw answered: that is how the tests
know which format was actually negotiated.

The tests push with raw HTTP (``requests``, as curl would), with
prometheus-client (``push_to_gateway`` / ``pushadd_to_gateway``, plain, gzip,
snappy, and a custom handler adding a ``Pushgateway-TTL`` header), and with
delimited protobuf built from ``pushgw.exposition.protobuf``'s message
classes; then they poll Prometheus's HTTP API (bounded, <= 20 s each) until
every pushed series arrived with exactly the expected labels and values.

Prometheus drops labels with empty values, so a series pushed without an
``instance`` (pushgw exposes ``instance=""``) must have NO instance label in
Prometheus -- in particular not the target's address. ``le`` and ``quantile``
labels are compared as numbers: Prometheus's protobuf parser writes them in
canonical float form (``le="100.0"``) whatever was pushed.
"""

from __future__ import annotations

import gzip
import http.client
import http.server
import math
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from differential_scenarios import _varint
from servers import (
    ServerProcess,
    prometheus_binary,
    prometheus_version,
    require_peer,
    start_prometheus,
    start_pushgw,
)

WAIT = 20.0  # every wait is bounded by this many seconds
FILE_BUDGET = 60.0  # the whole file, fixtures included
POLL = 0.25

PROTOBUF_CT = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"

_file_started = [time.monotonic()]  # reset when the stack fixture starts


# ---- a recording pass-through between Prometheus and pushgw ---------------


@dataclass
class Scrape:
    accept: str
    accept_encoding: str
    status: int
    content_type: str
    content_encoding: str
    body: bytes


class Tap:
    """Forwards every GET verbatim to pushgw and records what was negotiated."""

    FORWARDED = ("Accept", "Accept-Encoding", "User-Agent", "X-Prometheus-Scrape-Timeout-Seconds")

    def __init__(self, upstream: ServerProcess):
        self.upstream = upstream
        self.scrapes: list[Scrape] = []
        tap = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                headers = {h: self.headers[h] for h in tap.FORWARDED if self.headers[h] is not None}
                conn = http.client.HTTPConnection(tap.upstream.host, tap.upstream.port, timeout=5)
                try:
                    conn.request("GET", self.path, headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    status = resp.status
                    ctype = resp.getheader("Content-Type", "")
                    cenc = resp.getheader("Content-Encoding", "")
                except OSError as err:
                    body, status, ctype, cenc = repr(err).encode(), 502, "text/plain", ""
                finally:
                    conn.close()
                tap.scrapes.append(Scrape(headers.get("Accept", ""), headers.get("Accept-Encoding", ""),
                                          status, ctype, cenc, body))
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                if cenc:
                    self.send_header("Content-Encoding", cenc)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def last(self) -> Scrape | None:
        return self.scrapes[-1] if self.scrapes else None

    def describe(self) -> str:
        s = self.last()
        if s is None:
            return "no scrape yet"
        body = gzip.decompress(s.body) if s.content_encoding == "gzip" else s.body
        return (f"{len(self.scrapes)} scrapes; last: Accept={s.accept!r} Accept-Encoding={s.accept_encoding!r} "
                f"-> {s.status} Content-Type={s.content_type!r} Content-Encoding={s.content_encoding!r}; "
                f"body[:600]={body[:600]!r}")


# ---- the Prometheus servers ------------------------------------------------


@dataclass
class Prom:
    name: str
    server: ServerProcess
    tap: Tap
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self):
        self.http.trust_env = False  # loopback only, never through a proxy

    def api(self, path: str, **params) -> dict:
        r = self.http.get(self.server.url + path, params=params, timeout=5)
        body = r.json()
        assert r.status_code == 200 and body.get("status") == "success", (
            f"{self.name}: GET {path} {params} -> {r.status_code} {r.text[:500]}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("/api/v1/query", query=expr)["result"]

    def series(self, match: str, lookback: float = 120.0) -> list[dict]:
        now = time.time()
        return self.api("/api/v1/series", **{"match[]": match, "start": f"{now - lookback:.3f}",
                                             "end": f"{now + 1:.3f}"})

    def targets(self) -> list[dict]:
        return self.api("/api/v1/targets", state="active")["activeTargets"]

    def assert_healthy(self) -> None:
        targets = self.targets()
        assert len(targets) == 1, f"{self.name}: expected one target, got {targets}"
        t = targets[0]
        assert t["health"] == "up" and t["lastError"] == "", (
            f"{self.name}: target {t['scrapeUrl']} health={t['health']!r} lastError={t['lastError']!r}; "
            f"tap: {self.tap.describe()}")

    def diagnostics(self) -> str:
        try:
            targets = self.targets()
        except Exception as err:  # noqa: BLE001 (diagnostics only)
            targets = repr(err)
        log = self.server.output().strip().splitlines()
        notable = [line for line in log if "level=warn" in line or "level=error" in line][-10:]
        return (f"[{self.name}] targets: {targets}\n[{self.name}] tap: {self.tap.describe()}\n"
                f"[{self.name}] log (warn/error): {notable}")


@dataclass
class Stack:
    pushgw: ServerProcess
    om: Prom
    proto: Prom
    version: tuple[int, int, int]
    flags: dict[str, list[str]]
    http: requests.Session

    @property
    def proms(self) -> tuple[Prom, Prom]:
        return (self.om, self.proto)

    def diagnostics(self) -> str:
        return f"Prometheus {'.'.join(map(str, self.version))}, flags {self.flags}\n" + \
            "\n".join(p.diagnostics() for p in self.proms) + "\n[pushgw] output tail:\n" + \
            "\n".join(self.pushgw.output().splitlines()[-20:])


def prometheus_config(target: str, version: tuple[int, int, int], *, native: bool) -> str:
    job = ["  - job_name: pushgw", "    honor_labels: true",
           "    static_configs:", f"      - targets: ['{target}']"]
    if version >= (2, 49, 0):  # pin the formats instead of relying on the default Accept
        protocols = "[PrometheusProto, OpenMetricsText1.0.0, PrometheusText0.0.4]" if native \
            else "[OpenMetricsText1.0.0, PrometheusText0.0.4]"
        job.append(f"    scrape_protocols: {protocols}")
    if native and version >= (3, 8, 0):
        job.append("    scrape_native_histograms: true")
    return "\n".join([
        "global:",
        "  scrape_interval: 1s",
        "  scrape_timeout: 1s",
        "  evaluation_interval: 1s",
        "scrape_configs:",
        *job,
    ]) + "\n"


def wait_until(check, stack: Stack, what: str, timeout: float = WAIT):
    """Call ``check()`` until it returns without AssertionError; bounded by ``timeout``.

    Every round also asserts both targets are healthy (up, no lastError).
    """
    deadline = time.monotonic() + min(timeout, WAIT)
    while True:
        try:
            for prom in stack.proms:
                prom.assert_healthy()
            return check()
        except AssertionError as err:
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout:.0f}s, {what}: {err}\n{stack.diagnostics()}") from None
        time.sleep(POLL)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    _file_started[0] = time.monotonic()
    binary = require_peer("prometheus", prometheus_binary() or "/usr/bin/prometheus")
    version = prometheus_version(binary)
    tmp = tmp_path_factory.mktemp("prometheus")
    started: list = []
    try:
        gw = start_pushgw()
        started.append(gw)
        taps = {name: Tap(gw) for name in ("om", "proto")}
        started.extend(taps.values())
        native_flags = ["--enable-feature=native-histograms"] if version < (3, 9, 0) else []
        flags = {"om": ["--log.level=info"], "proto": ["--log.level=info", *native_flags]}
        servers = {}
        for name, tap in taps.items():
            config = prometheus_config(tap.address, version, native=(name == "proto"))
            servers[name] = start_prometheus(config, tmp, *flags[name], ready_timeout=15)
            started.append(servers[name])
        session = requests.Session()
        session.trust_env = False
        s = Stack(gw, Prom("om", servers["om"], taps["om"]), Prom("proto", servers["proto"], taps["proto"]),
                  version, flags, session)
        # Prometheus applies a new target only after its discovery/reload tick
        # (about 5 s): wait for the first successful scrape of each.
        def scraped():
            for prom in s.proms:
                up = prom.query("up")
                assert up and up[0]["value"][1] == "1", f"{prom.name}: up = {up}"

        wait_until(scraped, s, "both Prometheus servers scraped pushgw")
        yield s
    finally:
        for thing in reversed(started):
            thing.close()


# ---- expected series ---------------------------------------------------------

NUMERIC_LABELS = ("le", "quantile")


def series_key(labels: dict[str, str]) -> tuple:
    """A hashable identity of a series; ``le``/``quantile`` compared as numbers."""
    items = []
    for k, v in labels.items():
        if k in NUMERIC_LABELS:
            v = float(v)
        items.append((k, v))
    return tuple(sorted(items, key=lambda kv: kv[0]))


def show(key: tuple) -> str:
    labels = dict(key)
    name = labels.pop("__name__", "")
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def recent(value: float) -> bool:
    return abs(value - time.time()) < 120


def zero(value: float) -> bool:
    return value == 0


def group_meta(**grouping) -> dict:
    """``push_time_seconds`` / ``push_failure_time_seconds`` of a group (in Prometheus)."""
    labels = {k: v for k, v in grouping.items() if v != ""}
    return {series_key({"__name__": "push_time_seconds", **labels}): recent,
            series_key({"__name__": "push_failure_time_seconds", **labels}): zero}


def expect(name: str, value, **labels) -> dict:
    return {series_key({"__name__": name, **labels}): value}


def value_matches(expected, got: float) -> bool:
    if callable(expected):
        return expected(got)
    if isinstance(expected, float) and math.isnan(expected):
        return math.isnan(got)
    return got == float(expected)


def check_series(prom: Prom, selector: str, expected: dict) -> None:
    """The instant query ``selector`` returns exactly ``expected`` (key -> value or predicate).

    A value that is a ``NativeHistogram`` must arrive as a native histogram
    (a ``histogram`` field); every other one as a float sample.
    """
    result = prom.query(selector)
    got = {}
    problems = []
    for sample in result:
        key = series_key(sample["metric"])
        if key in got:
            problems.append(f"duplicate series {show(key)}")
        got[key] = sample
    for key, want in expected.items():
        sample = got.get(key)
        if sample is None:
            problems.append(f"missing {show(key)}")
            continue
        if isinstance(want, NativeHistogram):
            if "histogram" not in sample:
                problems.append(f"{show(key)} arrived as a float sample {sample.get('value')}, "
                                f"not as a native histogram")
            else:
                problem = want.mismatch(sample["histogram"][1])
                if problem:
                    problems.append(f"{show(key)}: {problem}")
        elif "value" not in sample:
            problems.append(f"{show(key)} arrived as {sample}, expected a float sample")
        elif not value_matches(want, float(sample["value"][1])):
            problems.append(f"{show(key)} = {sample['value'][1]}, expected {getattr(want, '__name__', want)}")
    for key in got.keys() - expected.keys():
        problems.append(f"unexpected series {show(key)} = {got[key].get('value') or got[key].get('histogram')}")
    assert not problems, f"{prom.name}: {selector}: " + "; ".join(problems)


def check_labelsets(prom: Prom, match: str, expected: dict) -> None:
    """``/api/v1/series`` knows exactly the expected label sets (over the last minutes)."""
    got = {series_key(s) for s in prom.series(match)}
    missing = expected.keys() - got
    extra = got - expected.keys()
    assert not missing and not extra, (
        f"{prom.name}: series {match}: missing {[show(k) for k in missing]}, "
        f"unexpected {[show(k) for k in extra]}")


def assert_arrived(stack: Stack, selector: str, expected: dict | tuple[dict, dict], what: str) -> None:
    """Wait until both Prometheus servers show exactly ``expected`` (or (om, proto) expectations)."""
    per_prom = expected if isinstance(expected, tuple) else (expected, expected)

    def check():
        for prom, want in zip(stack.proms, per_prom):
            check_series(prom, selector, want)
            check_labelsets(prom, selector, want)

    wait_until(check, stack, what)


def assert_gone(stack: Stack, selector: str, what: str) -> None:
    """Wait until the instant query returns nothing on both (the series went stale)."""
    def check():
        for prom in stack.proms:
            result = prom.query(selector)
            assert not result, f"{prom.name}: {selector} still returns {[r['metric'] for r in result]}"

    wait_until(check, stack, what)


@dataclass(frozen=True)
class NativeHistogram:
    """Expected native histogram (Prometheus JSON): count, sum and buckets."""

    count: float
    sum: float
    # (boundary rule, lower, upper, count): rule 0 = (l,u], 1 = [l,u), 3 = [l,u]
    buckets: frozenset

    def mismatch(self, got: dict) -> str | None:
        buckets = frozenset((b[0], float(b[1]), float(b[2]), float(b[3])) for b in got.get("buckets", []))
        if float(got["count"]) != self.count or float(got["sum"]) != self.sum or buckets != self.buckets:
            return (f"native histogram count={got['count']} sum={got['sum']} buckets={sorted(buckets)}, "
                    f"expected count={self.count} sum={self.sum} buckets={sorted(self.buckets)}")
        return None


# ---- pushing -------------------------------------------------------------------


def push(stack: Stack, method: str, path: str, body: bytes = b"", headers: dict | None = None,
         expect_status: int = 200) -> requests.Response:
    r = stack.http.request(method, stack.pushgw.url + path, data=body, headers=headers or {}, timeout=5)
    assert r.status_code == expect_status, (
        f"{method} {path} headers={headers} body={body[:300]!r} -> {r.status_code} {r.text[:500]!r}")
    return r


# ---- the tests -------------------------------------------------------------------


def test_targets_healthy_and_formats_negotiated(stack):
    """Both targets are up with no error, and each Prometheus got the format it asked for."""
    for prom in stack.proms:
        prom.assert_healthy()
        assert prom.tap.scrapes, f"{prom.name}: no scrape went through the tap"
        for s in prom.tap.scrapes:
            assert s.status == 200, f"{prom.name}: a scrape got {s.status}: {s.body[:300]!r}"
    om, proto = stack.om.tap.last(), stack.proto.tap.last()
    # Prometheus (2.x default, or pinned) prefers OpenMetrics 1.0.0; pushgw offers it.
    assert om.accept.startswith("application/openmetrics-text"), om.accept
    assert om.content_type.startswith("application/openmetrics-text; version=1.0.0"), (
        f"om: Accept {om.accept!r} answered with {om.content_type!r}")
    # With native histograms on, Prometheus prefers the delimited protobuf format.
    assert proto.accept.startswith("application/vnd.google.protobuf"), proto.accept
    # ... naming the escaping of names as the official does (underscores unless asked).
    assert proto.content_type.replace(" ", "").split(";escaping=")[0] == PROTOBUF_CT.replace(" ", ""), (
        f"proto: Accept {proto.accept!r} answered with {proto.content_type!r}")
    for s in (om, proto):
        assert "gzip" in s.accept_encoding
        assert s.content_encoding == "gzip", f"Accept-Encoding {s.accept_encoding!r} -> {s.content_encoding!r}"
        assert s.body[:2] == b"\x1f\x8b", "Content-Encoding gzip but the body is not gzip"
    om_body = gzip.decompress(om.body)
    assert om_body.endswith(b"# EOF\n"), f"OpenMetrics body does not end with '# EOF': {om_body[-200:]!r}"


TEXT_GROUP_A = b"""\
# HELP e2e_requests Requests handled (a counter without _total, as in the README).
# TYPE e2e_requests counter
e2e_requests{code="200"} 42
e2e_requests{code="500"} 3
# TYPE e2e_bytes_total counter
e2e_bytes_total 1024
# HELP e2e_temperature A gauge.
# TYPE e2e_temperature gauge
e2e_temperature{room="lab"} -12.5
# TYPE e2e_rpc_seconds summary
e2e_rpc_seconds{quantile="0.5"} 0.25
e2e_rpc_seconds{quantile="0.99"} 1.5
e2e_rpc_seconds_sum 17.5
e2e_rpc_seconds_count 40
# TYPE e2e_size_bytes histogram
e2e_size_bytes_bucket{le="100"} 2
e2e_size_bytes_bucket{le="1000"} 5
e2e_size_bytes_bucket{le="+Inf"} 6
e2e_size_bytes_sum 4321
e2e_size_bytes_count 6
e2e_untyped{job="overridden_by_the_url",instance="overridden_too"} 7
"""


def test_raw_http_pushes(stack):
    """curl-like pushes: job/instance from the grouping key, instance="" dropped, every type."""
    push(stack, "PUT", "/metrics/job/e2e_raw/instance/inst-a", TEXT_GROUP_A)
    push(stack, "PUT", "/metrics/job/e2e_raw/instance/inst-b",
         b"# HELP e2e_temperature A gauge.\n# TYPE e2e_temperature gauge\ne2e_temperature{room=\"lab\"} 3\n")
    # No instance in the grouping key: pushgw exposes instance="", which
    # Prometheus drops -- the series must not get the target's instance.
    push(stack, "POST", "/metrics/job/e2e_noinst",
         b'e2e_noinst_value 1\ne2e_noinst_labelled{instance="from-body",job="ignored",empty=""} 2\n')
    # An explicitly empty instance in the URL (base64 "=") means the same.
    push(stack, "PUT", "/metrics/job/e2e_emptyinst/instance@base64/=", b"e2e_emptyinst_value 5\n",
         headers={"Content-Type": "text/plain; version=0.0.4"})
    # A label value with a slash, base64url-encoded in the path.
    push(stack, "PUT", "/metrics/job/e2e_slash/path@base64/L3Zhci90bXA", b"e2e_slash_value 9\n")

    a = dict(job="e2e_raw", instance="inst-a")
    expected_a = {
        **expect("e2e_requests", 42, code="200", **a),
        **expect("e2e_requests", 3, code="500", **a),
        **expect("e2e_bytes_total", 1024, **a),
        **expect("e2e_temperature", -12.5, room="lab", **a),
        **expect("e2e_rpc_seconds", 0.25, quantile="0.5", **a),
        **expect("e2e_rpc_seconds", 1.5, quantile="0.99", **a),
        **expect("e2e_rpc_seconds_sum", 17.5, **a),
        **expect("e2e_rpc_seconds_count", 40, **a),
        **expect("e2e_size_bytes_bucket", 2, le="100", **a),
        **expect("e2e_size_bytes_bucket", 5, le="1000", **a),
        **expect("e2e_size_bytes_bucket", 6, le="+Inf", **a),
        **expect("e2e_size_bytes_sum", 4321, **a),
        **expect("e2e_size_bytes_count", 6, **a),
        **expect("e2e_untyped", 7, **a),
        **group_meta(**a),
    }
    expected_b = {
        **expect("e2e_temperature", 3, room="lab", job="e2e_raw", instance="inst-b"),
        **group_meta(job="e2e_raw", instance="inst-b"),
    }
    assert_arrived(stack, '{job="e2e_raw",instance="inst-a"}', expected_a, "text group inst-a arrived")
    assert_arrived(stack, '{job="e2e_raw",instance="inst-b"}', expected_b, "text group inst-b arrived")
    assert_arrived(stack, '{job="e2e_noinst"}', {
        **expect("e2e_noinst_value", 1, job="e2e_noinst"),
        **expect("e2e_noinst_labelled", 2, job="e2e_noinst", instance="from-body"),
        **group_meta(job="e2e_noinst"),
    }, "group without instance arrived without an instance label")
    assert_arrived(stack, '{job="e2e_emptyinst"}', {
        **expect("e2e_emptyinst_value", 5, job="e2e_emptyinst"),
        **group_meta(job="e2e_emptyinst"),
    }, "group with instance=\"\" arrived without an instance label")
    assert_arrived(stack, '{job="e2e_slash"}', {
        **expect("e2e_slash_value", 9, job="e2e_slash", path="/var/tmp"),
        **group_meta(job="e2e_slash", path="/var/tmp"),
    }, "group with a base64 grouping label arrived")
    # The whole merged family, across both groups, exactly:
    assert_arrived(stack, "e2e_temperature", {
        **expect("e2e_temperature", -12.5, room="lab", **a),
        **expect("e2e_temperature", 3, room="lab", job="e2e_raw", instance="inst-b"),
    }, "e2e_temperature merged over two groups")

    # POST replaces only the families it pushes; PUT would replace the group.
    push(stack, "POST", "/metrics/job/e2e_raw/instance/inst-a",
         b"# HELP e2e_temperature A gauge.\n# TYPE e2e_temperature gauge\ne2e_temperature{room=\"lab\"} 21\n")
    expected_a[series_key({"__name__": "e2e_temperature", "room": "lab", **a})] = 21
    assert_arrived(stack, '{job="e2e_raw",instance="inst-a"}', expected_a, "POST replaced one family")


def _client_registry(scale: float):
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

    registry = CollectorRegistry()
    Counter("e2e_client_jobs", "Jobs done.", ["outcome"], registry=registry).labels("ok").inc(3 * scale)
    Gauge("e2e_client_last_success", "When.", registry=registry).set(1_700_000_000 + scale)
    s = Summary("e2e_client_duration_seconds", "Durations.", registry=registry)
    h = Histogram("e2e_client_size_bytes", "Sizes.", buckets=(10, 100, 1000), registry=registry)
    for v in (5, 50, 500 * scale, 5000):
        s.observe(v)
        h.observe(v)
    return registry


def _expected_from_registry(registry, **grouping) -> dict:
    """Every sample prometheus-client pushes, with the grouping labels, as Prometheus keeps them."""
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            labels = {"__name__": sample.name, **sample.labels, **grouping}
            out[series_key({k: v for k, v in labels.items() if v != ""})] = sample.value
    out.update(group_meta(**grouping))
    return out


def test_prometheus_client_pushes(stack, monkeypatch):
    """push_to_gateway / pushadd_to_gateway: plain, gzip, snappy, a custom handler (TTL header)."""
    from prometheus_client.exposition import default_handler, push_to_gateway, pushadd_to_gateway

    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    gateway = stack.pushgw.url
    job = "e2e_client"
    regs = {key: _client_registry(scale) for key, scale in
            (("plain", 1), ("gzip", 2), ("snappy", 3), ("ttl", 4), ("noinst", 5))}
    push_to_gateway(gateway, job, regs["plain"], grouping_key={"instance": "plain"})
    pushadd_to_gateway(gateway, job, regs["gzip"], grouping_key={"instance": "gzip"}, compression="gzip")
    push_to_gateway(gateway, job, regs["snappy"], grouping_key={"instance": "snappy"}, compression="snappy")
    push_to_gateway(gateway, job, regs["noinst"], grouping_key={"stage": "noinst"}, compression="gzip")

    handled = []

    def ttl_handler(url, method, timeout, headers, data):
        def handle():
            handled.append((method, url, list(headers)))
            default_handler(url, method, timeout, [*headers, ("Pushgateway-TTL", "3s")], data)()
        return handle

    pushed_ttl = time.time()
    pushadd_to_gateway(gateway, job, regs["ttl"], grouping_key={"instance": "ttl"},
                       handler=ttl_handler, compression="gzip")
    assert handled and handled[0][0] == "POST", handled

    for key in ("plain", "gzip", "snappy"):
        assert_arrived(stack, f'{{job="{job}",instance="{key}"}}',
                       _expected_from_registry(regs[key], job=job, instance=key),
                       f"prometheus-client push ({key}) arrived")
    assert_arrived(stack, f'{{job="{job}",stage="noinst"}}',
                   _expected_from_registry(regs["noinst"], job=job, stage="noinst"),
                   "prometheus-client push without instance arrived without an instance label")

    # The handler's TTL header reached pushgw: the group expires 3 s after
    # its push, and its series go stale in Prometheus while the others stay.
    expected_ttl = _expected_from_registry(regs["ttl"], job=job, instance="ttl")

    def ttl_arrived():  # a range query, since the group may have expired already
        for prom in stack.proms:
            got = {series_key(s["metric"]): float(s["values"][-1][1])
                   for s in prom.query(f'{{job="{job}",instance="ttl"}}[1m]')}
            assert got.keys() == expected_ttl.keys(), (
                f"{prom.name}: TTL group series {sorted(map(show, got))} != {sorted(map(show, expected_ttl))}")
            for key, want in expected_ttl.items():
                assert value_matches(want, got[key]), f"{prom.name}: {show(key)} = {got[key]}"

    wait_until(ttl_arrived, stack, "the group pushed through the custom handler arrived")
    assert_gone(stack, f'{{job="{job}",instance="ttl"}}', "the TTL group went stale after expiring")
    assert time.time() - pushed_ttl >= 3, "the TTL group vanished before its 3 s TTL"
    assert_arrived(stack, f'{{job="{job}",instance="plain"}}',
                   _expected_from_registry(regs["plain"], job=job, instance="plain"),
                   "the other groups stay")


# ---- protobuf ----------------------------------------------------------------------


def _delimited(*families) -> bytes:
    return b"".join(_varint(len(raw)) + raw for raw in (f.SerializeToString() for f in families))


def _pb():
    from pushgw.exposition.protobuf import pb  # the io.prometheus.client message classes

    return pb


def _family(pb, name: str, type_: str, help_: str = "", metrics=()):
    mf = pb.MetricFamily(name=name, type=_metric_type_number(pb, type_))
    if help_:
        mf.help = help_
    for m in metrics:
        mf.metric.append(m)
    return mf


def _metric_type_number(pb, type_: str) -> int:
    return pb.MetricFamily.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_name[type_].number


def _labels(pb, **labels):
    return [pb.LabelPair(name=k, value=v) for k, v in labels.items()]


def _native_histogram_metric(pb, **labels):
    """schema 0, zero threshold 0.001: zero bucket 1, (0.5,1] 2, (1,2] 3, [-2,-1) 1."""
    h = pb.Histogram(sample_count=7, sample_sum=3.5, schema=0, zero_threshold=0.001, zero_count=1)
    h.positive_span.append(pb.BucketSpan(offset=0, length=2))
    h.positive_delta.extend([2, 1])
    h.negative_span.append(pb.BucketSpan(offset=1, length=1))
    h.negative_delta.extend([1])
    return pb.Metric(label=_labels(pb, **labels), histogram=h)


NATIVE_EXPECTED = NativeHistogram(7, 3.5, frozenset({
    (3, -0.001, 0.001, 1.0), (0, 0.5, 1.0, 2.0), (0, 1.0, 2.0, 3.0), (1, -2.0, -1.0, 1.0)}))


def _proto_families(pb):
    return [
        _family(pb, "e2e_pb_events_total", "COUNTER", "Events.", [
            pb.Metric(label=_labels(pb, kind="a"), counter=pb.Counter(value=11)),
            pb.Metric(label=_labels(pb, kind="b"), counter=pb.Counter(value=0.5))]),
        _family(pb, "e2e_pb_queue", "GAUGE", "Queue length.", [pb.Metric(gauge=pb.Gauge(value=5.5))]),
        _family(pb, "e2e_pb_latency_seconds", "SUMMARY", "Latency.", [pb.Metric(summary=pb.Summary(
            sample_count=9, sample_sum=2.5,
            quantile=[pb.Quantile(quantile=0.5, value=0.1), pb.Quantile(quantile=0.9, value=0.4)]))]),
        _family(pb, "e2e_pb_payload_bytes", "HISTOGRAM", "Payloads.", [pb.Metric(histogram=pb.Histogram(
            sample_count=5, sample_sum=120,
            bucket=[pb.Bucket(upper_bound=10, cumulative_count=1),
                    pb.Bucket(upper_bound=100, cumulative_count=4)]))]),
        _family(pb, "e2e_pb_untyped", "UNTYPED", "", [pb.Metric(untyped=pb.Untyped(value=3))]),
        _family(pb, "e2e_pb_native_seconds", "HISTOGRAM", "A native histogram.",
                [_native_histogram_metric(pb, path="/x")]),
    ]


def _proto_expected(native_as_native: bool, **grouping) -> dict:
    g = {k: v for k, v in grouping.items() if v != ""}
    out = {
        **expect("e2e_pb_events_total", 11, kind="a", **g),
        **expect("e2e_pb_events_total", 0.5, kind="b", **g),
        **expect("e2e_pb_queue", 5.5, **g),
        **expect("e2e_pb_latency_seconds", 0.1, quantile="0.5", **g),
        **expect("e2e_pb_latency_seconds", 0.4, quantile="0.9", **g),
        **expect("e2e_pb_latency_seconds_sum", 2.5, **g),
        **expect("e2e_pb_latency_seconds_count", 9, **g),
        **expect("e2e_pb_payload_bytes_bucket", 1, le="10", **g),
        **expect("e2e_pb_payload_bytes_bucket", 4, le="100", **g),
        **expect("e2e_pb_payload_bytes_bucket", 5, le="+Inf", **g),
        **expect("e2e_pb_payload_bytes_sum", 120, **g),
        **expect("e2e_pb_payload_bytes_count", 5, **g),
        **expect("e2e_pb_untyped", 3, **g),
        **group_meta(**grouping),
    }
    if native_as_native:
        out.update(expect("e2e_pb_native_seconds", NATIVE_EXPECTED, path="/x", **g))
    else:  # the text formats carry only the count, the sum and the +Inf bucket
        out.update({
            **expect("e2e_pb_native_seconds_bucket", 7, le="+Inf", path="/x", **g),
            **expect("e2e_pb_native_seconds_sum", 3.5, path="/x", **g),
            **expect("e2e_pb_native_seconds_count", 7, path="/x", **g),
        })
    return out


def test_protobuf_pushes(stack):
    """Delimited protobuf, plain and gzip; every type; native histograms arrive as native histograms."""
    pb = _pb()
    body = _delimited(*_proto_families(pb))
    push(stack, "PUT", "/metrics/job/e2e_proto/instance/pb", body, headers={"Content-Type": PROTOBUF_CT})
    push(stack, "PUT", "/metrics/job/e2e_proto_noinst", gzip.compress(body),
         headers={"Content-Type": PROTOBUF_CT, "Content-Encoding": "GZIP"})

    grouping = dict(job="e2e_proto", instance="pb")
    assert_arrived(stack, '{job="e2e_proto"}',
                   (_proto_expected(False, **grouping), _proto_expected(True, **grouping)),
                   "protobuf push arrived (native histogram native on the protobuf scrape)")
    assert_arrived(stack, '{job="e2e_proto_noinst"}',
                   (_proto_expected(False, job="e2e_proto_noinst"), _proto_expected(True, job="e2e_proto_noinst")),
                   "gzip protobuf push without instance arrived without an instance label")

    # Prometheus's own count agrees: a native histogram is one sample of the
    # protobuf scrape, three (+Inf bucket, sum, count) of the OpenMetrics one;
    # everything else counts the same in both.
    def sample_counts():
        om = float(stack.om.query("scrape_samples_scraped")[0]["value"][1])
        proto = float(stack.proto.query("scrape_samples_scraped")[0]["value"][1])
        natives = len(stack.proto.query('histogram_count({__name__=~".+"})'))
        assert natives >= 2 and om - proto == 2 * natives, (
            f"scrape_samples_scraped: om {om}, proto {proto}, native histograms exposed {natives}")

    wait_until(sample_counts, stack, "scrape_samples_scraped tells the formats apart")


def test_delete_makes_series_stale(stack):
    """DELETE of a group: its series (float and native) go stale; other groups stay."""
    pb = _pb()
    body = _delimited(
        _family(pb, "e2e_del_count_total", "COUNTER", "Counts.", [pb.Metric(counter=pb.Counter(value=2))]),
        _family(pb, "e2e_del_native_seconds", "HISTOGRAM", "Native.", [_native_histogram_metric(pb)]))
    push(stack, "PUT", "/metrics/job/e2e_del/instance/doomed", body, headers={"Content-Type": PROTOBUF_CT})
    push(stack, "PUT", "/metrics/job/e2e_del/instance/kept", b"# TYPE e2e_del_count_total counter\n"
                                                              b"e2e_del_count_total 4\n")
    doomed = dict(job="e2e_del", instance="doomed")
    kept = dict(job="e2e_del", instance="kept")
    om_expected = {
        **expect("e2e_del_count_total", 2, **doomed),
        **expect("e2e_del_native_seconds_bucket", 7, le="+Inf", **doomed),
        **expect("e2e_del_native_seconds_sum", 3.5, **doomed),
        **expect("e2e_del_native_seconds_count", 7, **doomed),
        **group_meta(**doomed),
    }
    proto_expected = {
        **expect("e2e_del_count_total", 2, **doomed),
        **expect("e2e_del_native_seconds", NATIVE_EXPECTED, **doomed),
        **group_meta(**doomed),
    }
    assert_arrived(stack, '{job="e2e_del",instance="doomed"}', (om_expected, proto_expected),
                   "the group to delete arrived")
    kept_expected = {**expect("e2e_del_count_total", 4, **kept), **group_meta(**kept)}
    assert_arrived(stack, '{job="e2e_del",instance="kept"}', kept_expected, "the group to keep arrived")

    push(stack, "DELETE", "/metrics/job/e2e_del/instance/doomed", expect_status=202)
    assert_gone(stack, '{job="e2e_del",instance="doomed"}', "the deleted group's series went stale")
    assert_arrived(stack, '{job="e2e_del",instance="kept"}', kept_expected, "the other group is untouched")


def test_healthy_throughout_and_within_budget(stack):
    """up was 1 at every scrape since the start, no scrape failed, and the file kept its time budget."""
    for prom in stack.proms:
        prom.assert_healthy()
        result = prom.query("min_over_time(up[5m])")
        assert result and result[0]["value"][1] == "1", f"{prom.name}: min_over_time(up[5m]) = {result}"
        failed = [s for s in prom.tap.scrapes if s.status != 200]
        assert not failed, f"{prom.name}: failed scrapes: {[(s.status, s.body[:200]) for s in failed]}"
        kinds = {(s.content_type, s.content_encoding) for s in prom.tap.scrapes}
        assert len(kinds) == 1, f"{prom.name}: the negotiated format changed between scrapes: {kinds}"
    elapsed = time.monotonic() - _file_started[0]
    assert elapsed < FILE_BUDGET, f"test_prometheus.py took {elapsed:.1f}s (budget {FILE_BUDGET:.0f}s)"
