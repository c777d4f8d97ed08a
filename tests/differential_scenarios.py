"""Scenarios for tests/test_differential.py.

A scenario is a list of steps replayed against the official Pushgateway and
against pushgw:

* ``Req``: one HTTP request (method, raw path, headers, body). Status codes
  are always compared; ``Location`` too for redirects; the body as set by
  ``body``:
    - "auto" (default): when the official answers >= 400 with a text/plain
      body, pushgw's body must be non-empty text/plain; when the official's
      body is empty, pushgw's must be empty too; otherwise not compared.
    - "exact": byte-for-byte equal to the official's body.
    - "ignore": not compared.
  ``contains``: a phrase the official's body contains and pushgw's must too.
  ``compare_headers``: response headers that must agree.
  ``official_override``: a different request for the official binary, used
  where pushgw follows a newer release than the installed 1.5.1.
* ``Snapshot``: compare the parsed ``/metrics`` and the normalised
  ``/api/v1/metrics`` of both right now.
* ``ExpectExit``: both processes must exit on their own (e.g. after
  ``/-/quit``) with the same exit code.

After the last step the state is compared again (unless ``compare_state`` is
False or the servers exited).

Scenarios without ``flags`` share one pair of servers started with
``--web.enable-admin-api`` and wiped before each scenario; scenarios with
``flags`` (or ``fresh=True``) get their own pair started with exactly those
flags.
"""

from __future__ import annotations

import base64
import gzip
import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    body_check: str = "auto"  # auto | exact | ignore
    contains: str | None = None
    # Response headers whose values must agree (Content-Type is compared by
    # media type and parameters, without charset/escaping).
    compare_headers: tuple[str, ...] = ()
    # Where pushgw deliberately follows a newer official release than the
    # installed 1.5.1: the request sent to the official binary instead, whose
    # 1.5.1 behaviour equals the newer release's answer to this request.
    official_override: "Req | None" = None

    def describe(self) -> str:
        hdr = "".join(f" [{k}: {v}]" for k, v in self.headers)
        body = self.body if len(self.body) <= 120 else self.body[:120] + b"..."
        return f"{self.method} {self.path}{hdr} body={body!r}"


@dataclass(frozen=True)
class Snapshot:
    def describe(self) -> str:
        return "SNAPSHOT (compare /metrics and /api/v1/metrics)"


@dataclass(frozen=True)
class ExpectExit:
    timeout: float = 5.0

    def describe(self) -> str:
        return "EXPECT EXIT (both processes exit with the same code)"


@dataclass(frozen=True)
class Scenario:
    id: str
    steps: tuple
    doc: str = ""
    flags: tuple[str, ...] = ()
    fresh: bool = False
    compare_state: bool = True
    # family name -> HELP strings any of which the official may expose on
    # /metrics (it picks one group's HELP in Go map order, i.e. at random).
    help_any_of: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # An open issue that will make pushgw pass this scenario: until then it is
    # a strict xfail, so the scenario starts failing the suite once it passes.
    pending: str = ""

    @property
    def needs_fresh_servers(self) -> bool:
        return self.fresh or bool(self.flags)


def _b(body) -> bytes:
    return body.encode() if isinstance(body, str) else body


def put(path, body=b"", **kw):
    return Req("PUT", path, _b(body), **kw)


def post(path, body=b"", **kw):
    return Req("POST", path, _b(body), **kw)


def delete(path, **kw):
    return Req("DELETE", path, **kw)


def get(path, **kw):
    return Req("GET", path, **kw)


def b64(s: str, pad: bool = True) -> str:
    enc = base64.urlsafe_b64encode(s.encode()).decode()
    return enc if pad else enc.rstrip("=")


# ---- a minimal protobuf encoder for io.prometheus.client.MetricFamily ----
PROTO_CT = (("Content-Type", "application/vnd.google.protobuf; "
                             "proto=io.prometheus.client.MetricFamily; encoding=delimited"),)
_TYPES = {"counter": 0, "gauge": 1, "summary": 2, "untyped": 3, "histogram": 4}
_VALUE_FIELD = {"counter": 3, "gauge": 2, "untyped": 5}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:  # length-delimited field
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _double(field: int, v: float) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<d", v)


def pb_family(name: str, typ: str, metrics, help: str | None = None) -> bytes:
    """One length-prefixed MetricFamily; metrics: [(labels dict, value)]."""
    body = _ld(1, name.encode())
    if help is not None:
        body += _ld(2, help.encode())
    body += _varint(3 << 3) + _varint(_TYPES[typ])
    for labels, value in metrics:
        m = b"".join(_ld(1, _ld(1, k.encode()) + _ld(2, v.encode()))
                     for k, v in labels.items())
        m += _ld(_VALUE_FIELD[typ], _double(1, value))
        body += _ld(4, m)
    return _varint(len(body)) + body


SNAP = Snapshot()
J = "/metrics/job/j"

HISTOGRAM = """# HELP hx A histogram.
# TYPE hx histogram
hx_bucket{le="0.5"} 1
hx_bucket{le="1"} 2
hx_bucket{le="+Inf"} 3
hx_sum 4.5
hx_count 3
"""

SUMMARY = """# HELP sm A summary.
# TYPE sm summary
sm{quantile="0.5"} 1.5
sm{quantile="0.99"} 9
sm_sum 20
sm_count 7
"""


def repeated_body(token: int, summary_count: str = "") -> str:
    """One shape of big body with values that change with ``token`` (pushgw's templates).

    ``summary_count`` replaces one summary count, for values a template
    leaves to full preparation.
    """
    lines = ["# HELP rep_total Requests.", "# TYPE rep_total counter"]
    lines += [f'rep_total{{path="/p{i % 37}",code="{200 + i % 3}",i="{i}"}} {token * 1000 + i}'
              for i in range(300)]
    lines.append("# TYPE rep_temp gauge")
    lines += [f'rep_temp{{room="r{i}"}} {(token - 3) * 1.25 + i / 8}' for i in range(200)]
    lines += ["rep_untyped +Inf" if token % 2 else "rep_untyped NaN", "# TYPE rep_lat histogram"]
    for j in range(20):
        lines += [f'rep_lat_bucket{{j="{j}",le="0.1"}} {token + j}', f'rep_lat_bucket{{j="{j}",le="1"}} {token * 2 + j}',
                  f'rep_lat_sum{{j="{j}"}} {token * 0.5 + j}', f'rep_lat_count{{j="{j}"}} {token * 3 + j}']
    lines.append("# TYPE rep_rpc summary")
    for j in range(20):
        count = summary_count if j == 3 and summary_count else str(token * 4 + j)
        lines += [f'rep_rpc{{j="{j}",quantile="0.5"}} {token / 3 + j}', f'rep_rpc_sum{{j="{j}"}} {token + j}',
                  f'rep_rpc_count{{j="{j}"}} {count}']
    body = "\n".join(lines) + "\n"
    assert len(body) >= 16 * 1024  # pushgw.handler.workers.WORKER_THRESHOLD: big enough for templates
    return body


def _scenarios() -> list[Scenario]:
    S = Scenario
    out: list[Scenario] = []
    add = out.append

    # ---- PUT / POST / DELETE semantics --------------------------------
    add(S("put-basic", (put(J, "a 1\n"),)))
    add(S("put-typed-families", (put(J + "/instance/i",
          "# HELP g A gauge.\n# TYPE g gauge\ng{l=\"v\"} 2.5\n"
          "# HELP c A counter.\n# TYPE c counter\nc_total 3\n"
          "# TYPE u untyped\nu 1\n"),)))
    add(S("put-replaces-whole-group",
          (put(J, "a 1\nb 2\n"), SNAP, put(J, "c 3\n")),
          doc="PUT replaces every family of the group"))
    add(S("post-replaces-same-named-families",
          (put(J, 'a{x="1"} 1\nb 2\n'), post(J, 'a{x="2"} 5\n')),
          doc="POST replaces only families with the same name"))
    add(S("post-new-group", (post(J + "/instance/i", "a 1\n"),)))
    add(S("put-empty-body-existing-group", (put(J, "a 1\n"), put(J, ""))))
    add(S("post-empty-body-existing-group", (put(J, "a 1\n"), post(J, ""))))
    add(S("put-empty-body-new-group", (put(J, ""),)))
    add(S("post-comments-and-blank-lines", (post(J, "# just a comment\n\n\na 1\n\n"),)))
    add(S("delete-group", (put(J, "a 1\n"), put("/metrics/job/k", "a 2\n"), delete(J))))
    add(S("delete-missing-group", (delete("/metrics/job/nope"),
                                   delete("/metrics/job/nope/instance/i"))))
    add(S("delete-job-leaves-instance-group",
          (put("/metrics/job/x", "a 1\n"), put("/metrics/job/x/instance/y", "a 2\n"),
           delete("/metrics/job/x"), SNAP, delete("/metrics/job/x/instance/y"))))
    add(S("delete-label-order-irrelevant",
          (put("/metrics/job/j/a/1/b/2", "m 1\n"), SNAP,
           delete("/metrics/job/j/b/2/a/1"))))
    add(S("label-order-same-group",
          (put("/metrics/job/j/a/1/b/2", "m 1\n"), put("/metrics/job/j/b/2/a/1", "n 1\n"))))

    # ---- grouping labels --------------------------------------------
    add(S("grouping-labels-override-body-labels",
          (put("/metrics/job/j/instance/i",
               'a{job="other",instance="x",l="v"} 1\nb{instance=""} 2\n'),)))
    add(S("instance-empty-label-added",
          (put(J, 'a 1\nb{l="v"} 2\n'), put("/metrics/job/j2/zone/z", "a 1\n"))))
    add(S("empty-label-value-in-path",
          (put("/metrics/job/j/instance/", "a 1\n"), put("/metrics/job/j/foo/", "b 1\n"))))
    add(S("job-label-in-path-overridden",
          (put("/metrics/job/j/job/k", "a 1\n"),)))
    add(S("trailing-slash-after-label", (put("/metrics/job/j/instance/i/", "a 1\n"),)))
    add(S("empty-label-value-in-body",
          (put(J, 'a{l=""} 1\na{l="x"} 2\n'),)))

    # ---- @base64 ---------------------------------------------------------
    add(S("base64-job-with-slash",
          (put("/metrics/job@base64/" + b64("a/b"), "a 1\n"),
           put("/metrics/job@base64/" + b64("a/b") + "/instance/i", "a 2\n"),
           SNAP, delete("/metrics/job@base64/" + b64("a/b")))))
    add(S("base64-label-urlsafe-alphabet",
          (put("/metrics/job/j/path@base64/" + b64("?>~/x"), "a 1\n"),)),
        )
    add(S("base64-padding-optional",
          (put("/metrics/job/j/v@base64/" + b64("a"), "a 1\n"),
           post("/metrics/job/j/v@base64/" + b64("a", pad=False), "b 1\n"),
           put("/metrics/job@base64/" + b64("jj", pad=False), "c 1\n"))),
        )
    add(S("base64-equals-is-empty-value",
          (put("/metrics/job/j/foo@base64/=", "a 1\n"),
           put("/metrics/job/j/instance@base64/=", "b 1\n"),
           put("/metrics/job/j/bar@base64/", "c 1\n"))))
    add(S("base64-empty-job-is-400",
          (put("/metrics/job@base64/=", "a 1\n", body_check="exact"),
           post("/metrics/job@base64/", "a 1\n"))))
    add(S("base64-invalid",
          (put("/metrics/job/j/foo@base64/!!!!", "a 1\n", contains="invalid base64"),
           put("/metrics/job@base64/%25%25", "a 1\n", contains="invalid base64"),
           put("/metrics/job/j/foo@base64/" + "fn5+", "a 1\n", contains="invalid base64"),
           put("/metrics/job/j/foo@base64/YQ=x", "a 1\n"),
           delete("/metrics/job/j/foo@base64/!!!!"))),
        )

    # ---- path encoding ---------------------------------------------------
    add(S("percent-encoding",
          (put("/metrics/job/my%20job/instance/a%3Ab%25c", "a 1\n"),
           put("/metrics/job/%6a2", "b 1\n"))))
    add(S("percent-encoded-slash-splits-path",
          (put("/metrics/job/j/instance/a%2Fb", "a 1\n"),
           put("/metrics/job/j/instance/a%2Fb/c", "a 1\n"))))
    add(S("literal-plus-in-path", (put("/metrics/job/a+b/instance/c+d", "a 1\n"),)))
    add(S("job-trailing-slash-307",
          (put("/metrics/job/", "a 1\n"), post("/metrics/job/", "a 1\n"),
           delete("/metrics/job/"), put("/metrics/job", "a 1\n"))))
    add(S("double-slash-301",
          (put("/metrics/job//instance/i", "a 1\n"),
           post("/metrics/job/j//instance/i", "a 1\n"),
           put("/metrics/job/j/./instance/i", "a 1\n"))))
    add(S("odd-number-of-components",
          (put("/metrics/job/j/instance", "a 1\n", contains="odd number of components"),
           put("/metrics/job/j/a/1/b", "a 1\n"),
           delete("/metrics/job/j/instance"))))
    add(S("invalid-label-names-in-path",
          (put("/metrics/job/j/1abc/v", "a 1\n", contains="improper label name"),
           put("/metrics/job/j/a-b/v", "a 1\n"),
           put("/metrics/job/j/a%20b/v", "a 1\n"),
           put("/metrics/job/j/@base64/YQ", "a 1\n"),
           delete("/metrics/job/j/a-b/v"))))
    add(S("reserved-label-names-in-path",
          (put("/metrics/job/j/__name__/v", "a 1\n", contains="improper label name"),
           put("/metrics/job/j/__x/v", "a 1\n"),
           put("/metrics/job/j/__x@base64/YQ", "a 1\n"),
           put("/metrics/job/j/_x/v", "a 1\n"))))
    # UTF-8 names without --push.enable-utf8-names (1.5.1 predates the flag;
    # the newest official rejects these without it just the same, and takes a
    # U__ label name in the path literally). The escaping= parameter of the
    # answer's Content-Type is newer than 1.5.1 and not compared.
    add(S("utf8-names-rejected-without-flag",
          (put("/metrics/job/j/U__my_2e_label/v", '{"my.metric", "other.label"="x"} 1\n',
               contains="invalid metric name"),
           put(J, 'a{"other.label"="x"} 1\n', contains="invalid label name"),
           put(J, '# TYPE "my.metric" gauge\n', contains="invalid metric name"),
           put("/metrics/job/j/my.label/v", "a 1\n", contains="improper label name"),
           delete("/metrics/job/j/my.label/v", contains="improper label name"),
           put("/metrics/job/j/U__my_2e_label/v", "a 1\n"),
           get("/metrics", headers=(("Accept", "text/plain;version=0.0.4;escaping=allow-utf-8"),),
               body_check="ignore", compare_headers=("Content-Type",)),
           get("/metrics", headers=(("Accept", "text/plain;version=0.0.4;escaping=values"),),
               body_check="ignore", compare_headers=("Content-Type",)))))

    # ---- text format errors -------------------------------------------
    add(S("text-missing-final-newline",
          (put(J, "a 1"), put("/metrics/job/k", "a 1\nb 2"))))
    add(S("text-crlf", (put(J, "a 1\r\n"), put("/metrics/job/k", "# TYPE a gauge\r\na 1\r\n"))))
    add(S("text-bad-float", (put(J, "a one\n"), post(J, "a 1.2.3\n"), put(J, "a 0x10\n"))))
    add(S("text-bad-label-escape",
          (put(J, 'a{l="\\q"} 1\n'), put(J, 'a{l="unterminated} 1\n'), put(J, 'a{l=v} 1\n'))))
    add(S("text-invalid-metric-name",
          (put(J, "1a 1\n"), put(J, "a-b 1\n"), put(J, 'a{1l="v"} 1\n'))))
    add(S("text-second-type-line",
          (put(J, "# TYPE a gauge\n# TYPE a counter\na 1\n"),
           put(J, "# TYPE a gauge\na 1\n# TYPE a gauge\n"),
           put(J, "# HELP a x\n# HELP a y\na 1\n"))))
    add(S("text-type-after-sample", (put(J, "a 1\n# TYPE a gauge\n"),)))
    add(S("text-unknown-type", (put(J, "# TYPE a foo\na 1\n"),)))
    add(S("text-timestamps-new-group",
          (put(J, "a 1 1600000000000\n"), SNAP),
          doc="a timestamped push is rejected but creates a failed group"))
    add(S("text-timestamps-existing-group",
          (put(J, "a 1\n"), post(J, "b 2 1600000000000\n"))))
    add(S("text-escapes-roundtrip",
          (put(J, '# HELP a with \\\\ backslash and \\n newline\na{l="q\\"uo\\\\te\\nnl"} 1\n'),)))
    add(S("text-label-order-and-spacing",
          (put(J, 'a{b="2",a="1"} 1\na { a = "3" , b="4", } 2\n'),)))
    add(S("text-interleaved-families",
          (put(J, "a 1\nb 2\na{x=\"y\"} 3\n"),)))

    # ---- consistency -------------------------------------------------------
    add(S("type-conflict-between-groups",
          (put(J, "# TYPE t gauge\nt 1\n"),
           put("/metrics/job/k", "# TYPE t counter\nt 2\n"), SNAP,
           put("/metrics/job/k", "# TYPE t gauge\nt 2\n"))))
    add(S("untyped-vs-typed-between-groups",
          (put(J, "# TYPE t gauge\nt 1\n"), put("/metrics/job/k", "t 2\n"))))
    add(S("duplicate-series-in-one-push",
          (put(J, "a 1\na 2\n"), put("/metrics/job/k", 'a{x="1"} 1\na{x="1"} 2\n'))))
    add(S("duplicate-series-across-groups",
          (put(J, 'a{x="1"} 1\n'), put("/metrics/job/j/x/1", "a 2\n"), SNAP,
           put("/metrics/job/j/x/2", "a 3\n"))))
    add(S("histogram-count-name-collision",
          (put(J, HISTOGRAM), put("/metrics/job/k", "hx_count 3\n"),
           put("/metrics/job/l", "hx_bucket{le=\"1\"} 3\n"),
           put("/metrics/job/m", HISTOGRAM + "hx_sum{x=\"y\"} 1\n"))))
    add(S("histogram-collision-same-push",
          (put(J, 'hx_count{x="1"} 3\n' + HISTOGRAM),
           put("/metrics/job/k", HISTOGRAM + "# TYPE hx_count gauge\nhx_count 3\n"))))
    add(S("summary-sum-name-collision",
          (put(J, SUMMARY), put("/metrics/job/k", "# TYPE sm_sum gauge\nsm_sum 3\n"))))
    add(S("counter-total-with-untyped",
          (put(J, "# TYPE ct_total counter\nct_total 1\nct 2\n"),
           put("/metrics/job/k", "# TYPE c2 counter\nc2 1\nc2_total 2\n"))))
    add(S("push-time-seconds-in-body",
          (put(J, "push_time_seconds 5\n# TYPE push_failure_time_seconds counter\n"
                  "push_failure_time_seconds 3\na 1\n"),
           post("/metrics/job/k", "# TYPE push_time_seconds counter\npush_time_seconds 7\n"))))
    add(S("gateway-own-name-untyped",
          (put(J, "pushgateway_build_info 1\n"),
           put("/metrics/job/k", "process_start_time_seconds 1\n"))))
    add(S("gateway-own-name-gauge",
          (put(J, "# HELP pushgateway_build_info mine\n# TYPE pushgateway_build_info gauge\n"
                  'pushgateway_build_info{version="x"} 1\n'),
           put("/metrics/job/k", "# TYPE process_start_time_seconds gauge\n"
                                 "process_start_time_seconds 12\n"))))
    add(S("gateway-own-counter-without-help",
          (put(J, "# TYPE pushgateway_http_requests_total counter\n"
                  "pushgateway_http_requests_total 1\n"),)))
    add(S("inconsistent-help-between-groups",
          (put(J, "# HELP h one\nh 1\n"), put("/metrics/job/k", "# HELP h two\nh 2\n"),
           SNAP, put("/metrics/job/l", "h 3\n")),
          help_any_of=(("h", ("one", "two", "")),)))
    add(S("histogram-without-inf-bucket",
          (put(J, '# TYPE hn histogram\nhn_bucket{le="1"} 1\nhn_bucket{le="2"} 2\n'
                  "hn_sum 3\nhn_count 4\n"),)))
    add(S("histogram-and-summary-api",
          (put(J, HISTOGRAM + SUMMARY),)))
    add(S("histogram-bad-le",
          (put(J, '# TYPE hb histogram\nhb_bucket{le="x"} 1\nhb_sum 1\nhb_count 1\n'),
           put(J, '# TYPE hb histogram\nhb_bucket 1\nhb_sum 1\nhb_count 1\n'))))
    add(S("nan-inf-values",
          (put(J, "a NaN\nb +Inf\nc -Inf\nd Inf\n" + HISTOGRAM.replace("4.5", "NaN")),)))
    add(S("large-and-small-floats",
          (put(J, "a 1000000\nb 1234567\nc 0.00001\nd 1e300\ne 123456789012345678\n"
                  "f -0.5\ng 1e21\nh 100000000000000000000\ni 0.1\nj 1.7976931348623157e308\n"
                  "k 5e-324\nm 3.0\nn 1E6\no 12345678.9\n"),),
          doc="-0 is left out: the official's /api/v1/metrics shows it as \"-0\", pushgw as \"0\" "
              "(it keeps samples as rendered text, where both write 0); see README"))
    add(S("failure-then-success",
          (put(J, "a 1\n"), put(J, "b 1 1600000000000\n"), SNAP,
           post(J, "b 2\n"), SNAP)))
    add(S("failure-on-new-group-then-success",
          (put(J, "# TYPE t gauge\nt 1\n"), put("/metrics/job/k", "# TYPE t counter\nt 1\n"),
           SNAP, put("/metrics/job/k", "# TYPE t gauge\nt{x=\"1\"} 1\n"))))

    # ---- methods, admin, lifecycle, probes ------------------------------
    add(S("method-not-allowed-on-push-paths",
          (get(J), Req("PATCH", J, b"a 1\n"), Req("OPTIONS", J),
           get(J + "/instance/i"), get("/metrics/job@base64/YQ"), Req("HEAD", J))))
    add(S("wipe-with-admin-api",
          (put(J, "a 1\n"), put("/metrics/job/k", "b 1\n"), SNAP,
           put("/api/v1/admin/wipe"))))
    add(S("wipe-wrong-method",
          (put(J, "a 1\n"), get("/api/v1/admin/wipe"), post("/api/v1/admin/wipe"),
           delete("/api/v1/admin/wipe"))))
    add(S("wipe-without-admin-api",
          (put(J, "a 1\n"), put("/api/v1/admin/wipe"), get("/api/v1/admin/wipe")),
          fresh=True))
    add(S("quit-without-lifecycle",
          (put("/-/quit", body_check="exact"), post("/-/quit", body_check="exact"),
           get("/-/quit", body_check="exact"), delete("/-/quit"))))
    add(S("quit-with-lifecycle",
          (put(J, "a 1\n"), get("/-/quit", body_check="exact"),
           post("/-/quit", body_check="exact"), ExpectExit()),
          flags=("--web.enable-lifecycle",), compare_state=False))
    add(S("healthy-and-ready",
          (get("/-/healthy", body_check="exact"), get("/-/ready", body_check="exact"),
           post("/-/healthy"), put("/-/ready"))))
    add(S("api-v1-metrics-and-status-methods",
          (put(J, "a 1\n"), post("/api/v1/metrics"), get("/api/v1/nope"))))
    add(S("unknown-paths",
          (get("/nope"), put("/metrics/nope/x", "a 1\n"), put("/metrics/jobs/x", "a 1\n"))))
    add(S("route-prefix",
          (put("/pg/metrics/job/j", "a 1\n"), post("/pg/metrics/job/k/instance/i", "b 1\n"),
           put("/metrics/job/j", "c 1\n"), get("/pg/-/healthy", body_check="exact"),
           get("/-/healthy"), get("/api/v1/metrics"), delete("/pg/metrics/job/k/instance/i"),
           get("/pg/metrics/job/j"), put("/pg/metrics/job/", "a 1\n"),
           put("/pg/-/quit", body_check="exact"), get("/pg/-/quit"),
           get("/-/quit", body_check="exact"), get("/pg/api/v1/status")),
          flags=("--web.route-prefix=/pg",)))
    add(S("route-prefix-trailing-slash",
          (put("/pg/metrics/job/j", "a 1\n"), get("/pg/-/ready")),
          flags=("--web.route-prefix=pg/",)))

    # ---- Content-Encoding ------------------------------------------------
    gz = gzip.compress(b"# TYPE z gauge\nz 1\n")
    add(S("gzip-lowercase", (put(J, gz, headers=(("Content-Encoding", "gzip"),)),)))
    add(S("gzip-uppercase",
          (post("/metrics/job/k", gz, headers=(("Content-Encoding", "GZIP"),),
                official_override=post("/metrics/job/k", gz,
                                       headers=(("Content-Encoding", "gzip"),))),
           put("/metrics/job/l", gz, headers=(("Content-Encoding", "Gzip"),),
               official_override=put("/metrics/job/l", gz,
                                     headers=(("Content-Encoding", "gzip"),)))),
          doc="1.5.1 matches Content-Encoding case-sensitively; newer releases (which "
              "pushgw follows) do not, so the official gets the lowercase request"))
    add(S("gzip-invalid-body",
          (put(J, "a 1\n", headers=(("Content-Encoding", "gzip"),)),
           put("/metrics/job/k", gzip.compress(b"a 1"), headers=(("Content-Encoding", "gzip"),)))))
    add(S("unknown-content-encoding-ignored",
          (put(J, "a 1\n", headers=(("Content-Encoding", "identity"),)),
           put("/metrics/job/k", "b 1\n", headers=(("Content-Type", "text/plain; version=0.0.4"),)),
           put("/metrics/job/l", "c 1\n", headers=(("Content-Type", "application/json"),)))))

    # ---- protobuf pushes -------------------------------------------------------
    pb_g = pb_family("pg", "gauge", [({"l": "v"}, 2.5), ({}, 1)], help="A pb gauge.")
    pb_c = pb_family("pc", "counter", [({}, 3)])
    add(S("protobuf-push",
          (put(J, pb_g + pb_c, headers=PROTO_CT),
           post("/metrics/job/k", pb_family("pu", "untyped", [({"job": "x", "z": "1"}, 7)]),
                headers=PROTO_CT))))
    add(S("protobuf-same-family-twice-last-wins",
          (put(J, pb_family("pg", "gauge", [({}, 1)]) + pb_family("pg", "gauge", [({"x": "2"}, 2)]),
               headers=PROTO_CT),)))
    add(S("protobuf-empty-body", (put(J, b"", headers=PROTO_CT),)))
    add(S("protobuf-body-as-text-without-content-type",
          (put(J, pb_g),),
          doc="without the protobuf Content-Type the body is parsed as text"))
    add(S("protobuf-truncated-length-prefix",
          (put(J, "a 1\n"),
           put(J, pb_g + b"\xff", headers=PROTO_CT,
               official_override=put(J, "a 1"))),
          doc="1.5.1 answers 200 and empties the group; 1.11.3 (followed by pushgw) answers 400 "
              "and changes nothing, which is what 1.5.1 does for malformed text"))

    # ---- scraping -----------------------------------------------------------
    add(S("scrape-negotiation",
          (put(J, "a 1\n"),
           get("/metrics", body_check="ignore", compare_headers=("Content-Type", "Content-Encoding")),
           get("/metrics", body_check="ignore", compare_headers=("Content-Type", "Content-Encoding"),
               headers=(("Accept-Encoding", "gzip"),)),
           # Deliberate difference: pushgw answers OpenMetrics when asked
           # (tests/test_http.py checks it); the official answers text.
           get("/metrics", body_check="ignore",
               headers=(("Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8"),)),
           get("/metrics", body_check="ignore", compare_headers=("Content-Type",),
               headers=(("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client."
                                   "MetricFamily;encoding=delimited"),)),
           Req("HEAD", "/metrics"), post("/metrics"))))
    add(S("trailing-slash-redirects",
          (get("/metrics/", body_check="ignore"), put("/metrics/"), get("/-/healthy/", body_check="ignore"),
           put("/-/healthy/")),
          doc="the official also redirects GET /api/v1/status/ to /status (its API router's "
              "stripped prefix); pushgw answers 404 there"))
    add(S("api-status-and-metrics-content-type",
          (get("/api/v1/status", body_check="ignore", compare_headers=("Content-Type",)),
           get("/api/v1/metrics", body_check="ignore", compare_headers=("Content-Type",)))))
    add(S("web-ui-pages",
          (get("/status", body_check="ignore"), get("/", body_check="ignore"),
           get("/static/nope", body_check="ignore"))))

    # ---- the same shape of big body again and again (pushgw's templates) --
    # Each of the two push workers builds its template on its second body of
    # the shape; eight pushes make sure both prepare the later ones from it.
    add(S("repeated-big-pushes",
          (*(step for token in range(1, 9) for step in (put(J, repeated_body(token)), SNAP)),
           put(J, repeated_body(9, summary_count="1.5")), SNAP,
           put(J, repeated_body(10, summary_count="1e999")), SNAP,
           put(J, repeated_body(11))),
          doc="values outside what a template takes: a summary count Go truncates, an "
              "overflow (400); negative and fractional histogram counts are parsed as "
              "the newer official releases do (tests/test_templates.py)"))

    # ---- --push.disable-consistency-check ------------------------------
    # Deliberate difference: after an inconsistent unchecked push the official
    # answers every scrape with 500, pushgw keeps the push out of /metrics and
    # serves the rest (tests/test_http.py checks that); so no snapshot is taken
    # while the culprit is stored, only after it is deleted.
    add(S("disable-consistency-check",
          (put(J, "# TYPE t gauge\nt 1\n"), SNAP,
           put("/metrics/job/k", "a 1 1600000000000\nb 2\n"), SNAP,
           put("/metrics/job/l", "# TYPE t counter\nt 2\n"),
           put("/metrics/job/m", "a 1"), delete("/metrics/job/l")),
          flags=("--push.disable-consistency-check",)))
    add(S("disable-consistency-check-duplicates",
          (post(J, "a 1\na 2\n"), delete(J), put(J, HISTOGRAM)),
          flags=("--push.disable-consistency-check",)))
    return out


SCENARIOS: list[Scenario] = _scenarios()

_ids = [s.id for s in SCENARIOS]
assert len(_ids) == len(set(_ids)), "duplicate scenario ids"
