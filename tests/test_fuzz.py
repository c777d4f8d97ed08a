"""Property-based tests: no input makes pushgw fail other than with a clear 4xx.

In CI every property runs a bounded number of examples; for a longer run set
PUSHGW_FUZZ_EXAMPLES (e.g. ``PUSHGW_FUZZ_EXAMPLES=200000 scripts/test tests/test_fuzz.py``).
"""

from __future__ import annotations

import os
import string

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushgw.exposition.protobuf import ProtobufError, encode_family, parse_delimited
from pushgw.exposition.text_parser import ParseError, parse_text
from pushgw.exposition.text_render import render_family
from pushgw.grouping import GroupingError, decode_base64, parse_grouping_labels

EXAMPLES = int(os.environ.get("PUSHGW_FUZZ_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

path_chars = st.sampled_from(list(string.ascii_letters + string.digits + "_-=/@.%+ ") + ["é", "\x00", "/"])
segment = st.text(path_chars, max_size=12)


@fuzz
@given(job=segment, job_b64=st.booleans(), rest=st.lists(segment, max_size=6))
def test_grouping_decoder_accepts_or_explains(job, job_b64, rest):
    labels_path = "".join("/" + part for part in rest)
    try:
        labels = parse_grouping_labels(job, job_b64, labels_path)
    except GroupingError as err:
        assert str(err)
        return
    assert labels["job"] != ""
    for name in labels:
        assert name.isascii() and not name.startswith("__")


@fuzz
@given(st.binary(max_size=64))
def test_base64_round_trip(value):
    import base64

    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return
    encoded = base64.urlsafe_b64encode(value).decode()
    assert decode_base64(encoded) == text
    assert decode_base64(encoded.rstrip("=") or "=") == text


text_lines = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda n, k, v, x: f'{n}{{{k}="{v}"}} {x}',
        st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
        st.from_regex(r"[a-z_]{1,4}", fullmatch=True),
        st.text(max_size=6),
        st.sampled_from(["1", "-2.5", "NaN", "+Inf", "1e3", "x", "", "1 2"]),
    ),
    st.sampled_from(["# TYPE a counter", "# TYPE h histogram", "# HELP a x\\ny", "h_bucket{le=\"1\"} 1",
                     "h_count 2", "h_sum 1", "# TYPE s summary", "s{quantile=\"0.5\"} 1", ""]),
)


@fuzz
@given(st.lists(text_lines, max_size=12), st.booleans())
def test_text_parser_accepts_or_explains_and_round_trips(lines, final_newline):
    body = "\n".join(lines) + ("\n" if final_newline else "")
    try:
        families = parse_text(body.encode("utf-8", "surrogatepass"))
    except ParseError as err:
        assert str(err).startswith("text format parsing error in line")
        return
    derived = {f.name + suffix for f in families.values() if f.type in ("summary", "histogram")
               for suffix in ("_bucket", "_sum", "_count")}
    if derived & families.keys():
        return  # x_count beside histogram x: the consistency check refuses it; no round trip
    rendered = b"".join(render_family(f) for f in families.values())
    again = parse_text(rendered)
    assert again.keys() == families.keys()
    for name, family in families.items():
        assert again[name].type == family.type
        assert len(again[name].metrics) == len(family.metrics) or family.type == "histogram"


@fuzz
@given(st.binary(max_size=200))
def test_protobuf_parser_accepts_or_explains(body):
    try:
        families = parse_delimited(body)
    except ProtobufError as err:
        assert str(err)
        return
    for family in families.values():
        assert parse_delimited(encode_family(family))[family.name].type == family.type


@pytest.fixture(scope="module")
def fuzz_server():
    from servers import start_pushgw

    with start_pushgw("--web.enable-admin-api") as server:
        yield server


method = st.sampled_from(["PUT", "POST", "DELETE", "GET", "PATCH", "OPTIONS"])
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Content-Encoding", "Pushgateway-TTL", "Accept"]),
    st.sampled_from([
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
        "gzip", "snappy", "text/plain", "1s", "-1", "abc", "application/openmetrics-text; version=1.0.0",
    ]),
    max_size=3,
)


@settings(max_examples=max(50, EXAMPLES // 3), deadline=None, suppress_health_check=list(HealthCheck))
@given(method=method, parts=st.lists(segment, max_size=5), body=st.one_of(st.binary(max_size=80), text_lines.map(
    lambda line: (line + "\n").encode("utf-8", "surrogatepass"))), hdrs=headers)
def test_http_never_answers_5xx(fuzz_server, method, parts, body, hdrs):
    path = "/metrics/job" + "".join("/" + requests.utils.quote(p, safe="@=+") for p in parts)
    r = requests.request(method, fuzz_server.url + path, data=body, headers=hdrs, allow_redirects=False, timeout=10)
    assert r.status_code < 500, (method, path, body, hdrs, r.status_code, r.text)
    scrape = requests.get(fuzz_server.url + "/metrics", timeout=10)
    assert scrape.status_code == 200
