"""Tests for the text format renderer: byte-for-byte Go expfmt output."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from pushgw.exposition.text_parser import parse_text
from pushgw.exposition.text_render import (
    format_value,
    render_family,
    render_header,
    render_metrics,
)
from pushgw.model import COUNTER, GAUGE, HISTOGRAM, SUMMARY, UNTYPED, Metric, MetricFamily

INF = float("inf")
NAN = float("nan")


def m(labels=None, value=0.0, count=0, sum=0.0, quantiles=(), buckets=(), ts=None):
    return Metric(dict(labels or {}), value, count, sum, list(quantiles), list(buckets), ts)


# ------------------------------------------------------------ format_value

# strconv.FormatFloat(v, 'g', -1, 64) outputs, as expfmt writes them.
GO_FLOATS = [
    (0.0, "0"),
    (1.0, "1"),
    (-1.0, "-1"),
    (1.5, "1.5"),
    (0.1, "0.1"),
    (0.1 + 0.2, "0.30000000000000004"),
    (100000.0, "100000"),
    (123456.0, "123456"),
    (999999.0, "999999"),
    (999999.5, "999999.5"),
    (1e6, "1e+06"),
    (1234567.0, "1.234567e+06"),
    (1756047.3, "1.7560473e+06"),
    (123456789.0, "1.23456789e+08"),
    (1e15, "1e+15"),
    (2.0**53, "9.007199254740992e+15"),
    (1e16, "1e+16"),
    (1e21, "1e+21"),
    (1e100, "1e+100"),
    (float(2**64 - 1), "1.8446744073709552e+19"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (0.0001, "0.0001"),
    (0.00012, "0.00012"),
    (1e-5, "1e-05"),
    (1.5e-5, "1.5e-05"),
    (-3.4e-5, "-3.4e-05"),
    (-1.23e-45, "-1.23e-45"),
    (2.2250738585072014e-308, "2.2250738585072014e-308"),
    (5e-324, "5e-324"),
    (3.14e42, "3.14e+42"),
    (-2693.123, "-2693.123"),
    (0.2342354, "0.2342354"),
    (2010.1971, "2010.1971"),
    (INF, "+Inf"),
    (-INF, "-Inf"),
    (NAN, "NaN"),
]


@pytest.mark.parametrize("v,text", GO_FLOATS)
def test_format_value_matches_go(v, text):
    assert format_value(v) == text


def test_negative_zero():
    # strconv writes "-0"; expfmt's text writer special-cases zero and
    # writes "0", in sample values as well as in quantile/le labels.
    assert format_value(-0.0) == "-0"
    f = MetricFamily("g", GAUGE, "", [m(value=-0.0)])
    assert render_metrics(f) == b"g 0\n"
    s = MetricFamily("s", SUMMARY, "", [m(sum=-0.0, quantiles=[(-0.0, -0.0)])])
    assert render_metrics(s) == b's{quantile="0"} 0\ns_sum 0\ns_count 0\n'


@settings(max_examples=3000)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_value_round_trips_and_follows_go_layout(v):
    s = format_value(v)
    assert float(s) == v
    if v != 0:
        exp = math.floor(math.log10(abs(v)))
        # log10 can be off by one at exact powers; the layout check below
        # uses the printed digits instead.
        mant, _, e = s.partition("e")
        if e:
            assert e[0] in "+-" and len(e) >= 3 and e[1:].isdigit()
            assert int(e) < -4 or int(e) >= 6
            assert len(mant.lstrip("-").split(".")[0]) == 1
        else:
            assert -5 <= exp <= 6
            assert not s.endswith(".0")


# ------------------------------------------------------------ header


def test_header_with_and_without_help():
    assert render_header("a", "gauge", "doc") == b"# HELP a doc\n# TYPE a gauge\n"
    assert render_header("a", "counter", "") == b"# TYPE a counter\n"


def test_help_escaping_keeps_quotes():
    assert render_header("g", "gauge", 'gauge\ndoc\nstr"ing \\ x') == (
        b'# HELP g gauge\\ndoc\\nstr"ing \\\\ x\n# TYPE g gauge\n'
    )


# ------------------------------------------------------------ Go's render scenarios


def test_counter_with_nan_and_timestamp():
    f = MetricFamily(
        "name",
        COUNTER,
        "two-line\n doc  str\\ing",
        [
            m({"labelname": "val1", "basename": "basevalue"}, NAN),
            m({"labelname": "val2", "basename": "basevalue"}, 0.23, ts=1234567890),
        ],
    )
    assert render_family(f) == (
        b"# HELP name two-line\\n doc  str\\\\ing\n"
        b"# TYPE name counter\n"
        b'name{labelname="val1",basename="basevalue"} NaN\n'
        b'name{labelname="val2",basename="basevalue"} 0.23 1234567890\n'
    )


def test_gauge_escaping_and_multibyte():
    f = MetricFamily(
        "gauge_name",
        GAUGE,
        'gauge\ndoc\nstr"ing',
        [
            m({"name_1": "val with\nnew line", "name_2": 'val with \\backslash and "quotes"'}, INF),
            m({"name_1": "Bj\u00f6rn", "name_2": "\u4f56\u4f65"}, 3.14e42),
        ],
    )
    assert render_family(f) == (
        '# HELP gauge_name gauge\\ndoc\\nstr"ing\n'
        "# TYPE gauge_name gauge\n"
        'gauge_name{name_1="val with\\nnew line",name_2="val with \\\\backslash and \\"quotes\\""} +Inf\n'
        'gauge_name{name_1="Bj\u00f6rn",name_2="\u4f56\u4f65"} 3.14e+42\n'
    ).encode()


def test_non_legacy_names_are_quoted_inside_the_braces():
    f = MetricFamily(
        "gauge.name",
        GAUGE,
        "doc",
        [m({"name.1": "a", "name*2": "b"}, 1.0), m({}, 2.0)],
    )
    assert render_family(f) == (
        b'# HELP "gauge.name" doc\n'
        b'# TYPE "gauge.name" gauge\n'
        b'{"gauge.name","name.1"="a","name*2"="b"} 1\n'
        b'{"gauge.name"} 2\n'
    )


def test_untyped_without_labels():
    f = MetricFamily("untyped_name", UNTYPED, "", [m(value=-INF), m({"name_1": "value 1"}, -1.23e-45)])
    assert render_family(f) == (
        b"# TYPE untyped_name untyped\n"
        b"untyped_name -Inf\n"
        b'untyped_name{name_1="value 1"} -1.23e-45\n'
    )


def test_summary():
    f = MetricFamily(
        "summary_name",
        SUMMARY,
        "summary docstring",
        [
            m(count=42, sum=-3.4567, quantiles=[(0.5, -1.23), (0.9, 0.2342354), (0.99, 0.0)]),
            m({"name_1": "value 1", "name_2": "value 2"}, count=4711, sum=2010.1971,
              quantiles=[(0.5, 1.0), (0.9, 2.0), (0.99, 3.0)]),
        ],
    )
    assert render_family(f) == (
        b"# HELP summary_name summary docstring\n"
        b"# TYPE summary_name summary\n"
        b'summary_name{quantile="0.5"} -1.23\n'
        b'summary_name{quantile="0.9"} 0.2342354\n'
        b'summary_name{quantile="0.99"} 0\n'
        b"summary_name_sum -3.4567\n"
        b"summary_name_count 42\n"
        b'summary_name{name_1="value 1",name_2="value 2",quantile="0.5"} 1\n'
        b'summary_name{name_1="value 1",name_2="value 2",quantile="0.9"} 2\n'
        b'summary_name{name_1="value 1",name_2="value 2",quantile="0.99"} 3\n'
        b'summary_name_sum{name_1="value 1",name_2="value 2"} 2010.1971\n'
        b'summary_name_count{name_1="value 1",name_2="value 2"} 4711\n'
    )


def test_summary_with_timestamp_and_huge_count():
    f = MetricFamily("s", SUMMARY, "", [m({"a": "b"}, count=2**64 - 1, sum=1.0, ts=-5)])
    assert render_metrics(f) == b's_sum{a="b"} 1 -5\ns_count{a="b"} 1.8446744073709552e+19 -5\n'


HISTOGRAM_TEXT = (
    b"# HELP request_duration_microseconds The response latency.\n"
    b"# TYPE request_duration_microseconds histogram\n"
    b'request_duration_microseconds_bucket{le="100"} 123\n'
    b'request_duration_microseconds_bucket{le="120"} 412\n'
    b'request_duration_microseconds_bucket{le="144"} 592\n'
    b'request_duration_microseconds_bucket{le="172.8"} 1524\n'
    b'request_duration_microseconds_bucket{le="+Inf"} 2693\n'
    b"request_duration_microseconds_sum 1.7560473e+06\n"
    b"request_duration_microseconds_count 2693\n"
)


@pytest.mark.parametrize("with_inf", [True, False])
def test_histogram_adds_missing_inf_bucket(with_inf):
    buckets = [(100.0, 123), (120.0, 412), (144.0, 592), (172.8, 1524)]
    if with_inf:
        buckets.append((INF, 2693))
    f = MetricFamily(
        "request_duration_microseconds", HISTOGRAM, "The response latency.",
        [m(count=2693, sum=1756047.3, buckets=buckets)],
    )
    assert render_family(f) == HISTOGRAM_TEXT


def test_float_histogram():
    f = MetricFamily(
        "name", HISTOGRAM, "doc string",
        [m(count=2693.123, sum=1756047.3, buckets=[(100.0, 123.123), (120.0, 412.0), (172.8, 1524.0)])],
    )
    assert render_family(f) == (
        b"# HELP name doc string\n"
        b"# TYPE name histogram\n"
        b'name_bucket{le="100"} 123.123\n'
        b'name_bucket{le="120"} 412\n'
        b'name_bucket{le="172.8"} 1524\n'
        b'name_bucket{le="+Inf"} 2693.123\n'
        b"name_sum 1.7560473e+06\n"
        b"name_count 2693.123\n"
    )


def test_histogram_with_labels_and_timestamp():
    f = MetricFamily("h", HISTOGRAM, "", [m({"a": 'x"y'}, count=3, sum=0.5, buckets=[(0.25, 1)], ts=7)])
    assert render_metrics(f) == (
        b'h_bucket{a="x\\"y",le="0.25"} 1 7\n'
        b'h_bucket{a="x\\"y",le="+Inf"} 3 7\n'
        b'h_sum{a="x\\"y"} 0.5 7\n'
        b'h_count{a="x\\"y"} 3 7\n'
    )


def test_labels_keep_the_dict_order():
    f = MetricFamily("g", GAUGE, "", [m({"z": "1", "a": "2"}, 5.0)])
    assert render_metrics(f) == b'g{z="1",a="2"} 5\n'


def test_label_escaping_each_character():
    f = MetricFamily("g", GAUGE, "", [m({"a": "\\"}, 1.0), m({"a": '"'}, 1.0), m({"a": "\n"}, 1.0), m({"a": "\t\r"}, 1.0)])
    assert render_metrics(f) == b'g{a="\\\\"} 1\ng{a="\\""} 1\ng{a="\\n"} 1\ng{a="\t\r"} 1\n'


def test_empty_family_renders_header_only():
    assert render_family(MetricFamily("g", GAUGE, "", [])) == b"# TYPE g gauge\n"


def test_unknown_type_is_refused():
    with pytest.raises(ValueError):
        render_metrics(MetricFamily("g", "stateset", "", [m()]))


def test_gauge_histogram_is_written_as_histogram():
    family = MetricFamily("g", "gaugehistogram", "", [Metric({}, count=2, sum=1.0, buckets=[(1.0, 2)])])
    assert render_family(family) == (
        b'# TYPE g histogram\ng_bucket{le="1"} 2\ng_bucket{le="+Inf"} 2\ng_sum 1\ng_count 2\n'
    )


# ------------------------------------------------------------ round trips

_LABEL_NAME = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in ("__name__", "quantile", "le")
)
_METRIC_NAME = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True)
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_HELP = _TEXT.filter(lambda s: not s.startswith((" ", "\t")))
_LABELS = st.dictionaries(_LABEL_NAME, _TEXT, max_size=4)
_VALUE = st.floats().map(lambda v: 0.0 if v == 0 else v)  # -0 is written "0"
_BOUND = st.floats(allow_nan=False).map(lambda v: 0.0 if v == 0 else v)  # NaN bounds are dropped by Go
_COUNT = st.integers(0, 2**53)
_TS = st.none() | st.integers(-(2**63), 2**63 - 1)


def _unique_label_sets(metrics):
    """Summaries/histograms with equal label sets merge when parsed back."""
    seen = set()
    out = []
    for metric in metrics:
        key = frozenset(metric.labels.items())
        if key not in seen:
            seen.add(key)
            out.append(metric)
    return out


# prometheus_client splits on any Unicode whitespace (e.g. U+0085), so the
# cross-check sticks to letters, digits, punctuation, symbols and a few
# characters that need escaping.
_PC_TEXT = st.text(
    st.characters(categories=("L", "N", "P", "S")) | st.sampled_from(' \n\\"'), max_size=12
)
_PC_HELP = _PC_TEXT.filter(lambda s: s == s.strip())
# It also rejects every label name starting with "__"; Go only reserves __name__.
_PC_LABELS = st.dictionaries(_LABEL_NAME.filter(lambda s: not s.startswith("__")), _PC_TEXT, max_size=4)


@st.composite
def families(draw, help_text=_HELP, label_sets=_LABELS):
    name = draw(_METRIC_NAME)
    typ = draw(st.sampled_from([COUNTER, GAUGE, UNTYPED, SUMMARY, HISTOGRAM]))
    help_ = draw(help_text)
    n = draw(st.integers(1, 4))
    metrics = []
    for _ in range(n):
        labels = draw(label_sets)
        ts = draw(_TS)
        if typ == SUMMARY:
            qs = draw(st.lists(st.tuples(_BOUND, _VALUE), max_size=3))
            metrics.append(Metric(labels, 0.0, draw(_COUNT), draw(_VALUE), qs, [], ts))
        elif typ == HISTOGRAM:
            bounds = draw(st.lists(_BOUND, max_size=3))
            count = draw(_COUNT)
            buckets = [(b, draw(_COUNT)) for b in bounds]
            if not any(b == INF for b in bounds):
                buckets.append((INF, count))  # the renderer would add it
            metrics.append(Metric(labels, 0.0, count, draw(_VALUE), [], buckets, ts))
        else:
            metrics.append(Metric(labels, draw(_VALUE), 0, 0.0, [], [], ts))
    if typ in (SUMMARY, HISTOGRAM):
        metrics = _unique_label_sets(metrics)
    return MetricFamily(name, typ, help_, metrics)


def _canon_metric(metric: Metric):
    def num(v):
        return ("nan",) if v != v else (type(v).__name__, v)

    return (
        tuple(metric.labels.items()),
        num(metric.value),
        num(metric.count),
        num(metric.sum),
        [(num(q), num(v)) for q, v in metric.quantiles],
        [(num(b), num(c)) for b, c in metric.buckets],
        metric.timestamp_ms,
    )


def _canon_family(f: MetricFamily):
    return (f.name, f.type, f.help, [_canon_metric(x) for x in f.metrics])


@settings(max_examples=1500, deadline=None)
@given(families())
def test_render_then_parse_gives_the_family_back(family):
    text = render_family(family)
    parsed = parse_text(text)
    assert list(parsed) == [family.name]
    assert _canon_family(parsed[family.name]) == _canon_family(family)


@settings(max_examples=500, deadline=None)
@given(families(_PC_HELP, _PC_LABELS))
def test_prometheus_client_parses_rendered_output(family):
    text = render_family(family).decode()
    got = list(text_string_to_metric_families(text))
    assert len(got) == 1
    pf = got[0]
    assert pf.name == family.name
    assert pf.documentation == family.help
    expected_samples = sum(
        1 if family.type in (COUNTER, GAUGE, UNTYPED) else
        len(x.quantiles) + 2 if family.type == SUMMARY else len(x.buckets) + 2
        for x in family.metrics
    )
    assert len(pf.samples) == expected_samples
    if family.type in (GAUGE, UNTYPED):
        # prometheus_client may rename counters (_total); values of gauges
        # and untyped samples come back as written.
        for sample, metric in zip(pf.samples, family.metrics):
            assert sample.labels == metric.labels
            assert (sample.value != sample.value and metric.value != metric.value) or sample.value == metric.value


def test_prometheus_client_reads_a_mixed_body():
    body = b"".join(
        render_family(f)
        for f in (
            MetricFamily("g", GAUGE, "a gauge", [m({"job": "x", "path": "C:\\tmp\n"}, 1.5)]),
            MetricFamily("s", SUMMARY, "", [m(count=3, sum=2.0, quantiles=[(0.5, 1.0)])]),
            MetricFamily("h", HISTOGRAM, "", [m(count=3, sum=2.0, buckets=[(1.0, 2)])]),
        )
    ).decode()
    got = {f.name: f for f in text_string_to_metric_families(body)}
    assert got["g"].samples[0].labels == {"job": "x", "path": "C:\\tmp\n"}
    assert got["g"].samples[0].value == 1.5
    assert [s.value for s in got["s"].samples] == [1.0, 2.0, 3.0]
    assert [(s.labels.get("le"), s.value) for s in got["h"].samples] == [("1", 2), ("+Inf", 3), (None, 2.0), (None, 3)]
