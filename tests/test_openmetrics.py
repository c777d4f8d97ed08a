"""Tests for the OpenMetrics 1.0 renderer: valid OpenMetrics, and the text format's series."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text_pc

from pushgw.exposition.openmetrics import EOF, om_name_and_type, render_family_om
from pushgw.exposition.protobuf import pb
from pushgw.exposition.text_render import render_family
from pushgw.model import (
    COUNTER,
    GAUGE,
    GAUGE_HISTOGRAM,
    HISTOGRAM,
    SUMMARY,
    UNTYPED,
    Metric,
    MetricFamily,
)

INF = float("inf")
NAN = float("nan")


def om_valid_families() -> list[MetricFamily]:
    """Families whose values OpenMetrics accepts for their type."""
    native = pb.Histogram(sample_count=3, sample_sum=1.5, schema=0, zero_threshold=1e-9,
                          positive_span=[pb.BucketSpan(offset=0, length=1)], positive_delta=[3])
    return [
        MetricFamily("requests_total", COUNTER, "Requests.", [
            Metric({"code": "200", "instance": "", "job": "j"}, 1027.0),
            Metric({"code": "500", "instance": "", "job": "j"}, 0.5),
        ]),
        MetricFamily("jobs", COUNTER, "No _total suffix.", [Metric({"job": "j"}, 3.0)]),
        MetricFamily("temperature", GAUGE, 'Help with "quotes", \\ and\nnewline.', [
            Metric({"room": 'a "b" \\ \n c'}, -21.5), Metric({"room": "ü"}, NAN),
            Metric({"room": "x"}, 1e21), Metric({"room": "y"}, -INF)]),
        MetricFamily("legacy", UNTYPED, "", [Metric({}, 7.0), Metric({"a": "b"}, 1.5e-7)]),
        MetricFamily("rpc_seconds", SUMMARY, "RPC latency.", [
            Metric({"job": "a"}, count=5, sum=1.25, quantiles=[(0.5, 0.2), (0.99, 0.4)]),
            Metric({"job": "b"}, count=0, sum=0.0),
        ]),
        MetricFamily("size_bytes", HISTOGRAM, "Sizes.", [
            Metric({"job": "a"}, count=4, sum=300.0, buckets=[(100.0, 2), (1000.0, 4)]),
            Metric({"job": "b"}, count=4, sum=300.0, buckets=[(0.5, 1), (1e6, 3), (INF, 4)]),
            Metric({"job": "c"}, count=3, sum=1.5, native=native.SerializeToString()),
        ]),
        MetricFamily("queue_size", GAUGE_HISTOGRAM, "A gauge histogram.", [
            Metric({"job": "a"}, count=4, sum=30.0, buckets=[(1.0, 1), (10.0, 3)]),
        ]),
        MetricFamily("with_ts", GAUGE, "", [Metric({"a": "b"}, 1.0, timestamp_ms=1700000000123),
                                            Metric({"a": "c"}, 2.0, timestamp_ms=5)]),
        MetricFamily("empty", GAUGE, "Nothing.", []),
    ]


def om(family: MetricFamily) -> str:
    return (render_family_om(family) + EOF).decode()


def sample_set(families) -> set:
    """(name, labels, value, timestamp) of every sample; NaN made comparable."""
    out = set()
    for f in families:
        for s in f.samples:
            value = "NaN" if math.isnan(s.value) else float(s.value)
            ts = None if s.timestamp is None else float(s.timestamp)
            out.add((s.name, tuple(sorted(s.labels.items())), value, ts))
    return out


def text_sample_set(*families: MetricFamily) -> set:
    """The samples Prometheus stores from the text format.

    prometheus_client's text parser appends ``_total`` to the samples of a
    counter that lacks it (its internal OpenMetrics view); Prometheus does
    not, so that is undone here.
    """
    out = set()
    for family in families:
        samples = sample_set(parse_text_pc(render_family(family).decode()))
        if family.type == COUNTER and not family.name.endswith("_total"):
            samples = {(n.removesuffix("_total"), *rest) for n, *rest in samples}
        out |= samples
    return out


@pytest.mark.parametrize("family", om_valid_families(), ids=lambda f: f.name)
def test_valid_openmetrics_with_the_text_formats_series(family):
    parsed = list(parse_om(om(family)))
    assert len(parsed) == 1
    assert parsed[0].documentation == family.help
    assert sample_set(parsed) == text_sample_set(family)


def test_all_families_in_one_exposition():
    body = b"".join(render_family_om(f) for f in om_valid_families()) + EOF
    parsed = list(parse_om(body.decode()))
    assert len(parsed) == len(om_valid_families())
    assert sample_set(parsed) == text_sample_set(*om_valid_families())


def test_counter_with_total_suffix():
    f = MetricFamily("jobs_total", COUNTER, "Jobs.", [Metric({"a": "b"}, 3.0)])
    assert render_family_om(f) == (
        b"# HELP jobs Jobs.\n# TYPE jobs counter\n" b'jobs_total{a="b"} 3\n')
    (parsed,) = parse_om(om(f))
    assert (parsed.name, parsed.type) == ("jobs", "counter")


def test_counter_without_total_suffix_is_unknown():
    # As a counter, OpenMetrics would require the sample to be named jobs_total,
    # a different series than the text format's "jobs".
    f = MetricFamily("jobs", COUNTER, "", [Metric({}, 3.0)])
    assert render_family_om(f) == b"# TYPE jobs unknown\njobs 3\n"
    assert om_name_and_type("_total", COUNTER) == ("_total", "unknown")
    (parsed,) = parse_om(om(MetricFamily("_total", COUNTER, "", [Metric({}, 1.0)])))
    assert (parsed.name, parsed.type, parsed.samples[0].name) == ("_total", "unknown", "_total")


@pytest.mark.parametrize("typ,expected", [
    (GAUGE, "gauge"), (UNTYPED, "unknown"), (SUMMARY, "summary"), (HISTOGRAM, "histogram"),
    (GAUGE_HISTOGRAM, "histogram"),
])
def test_types(typ, expected):
    assert om_name_and_type("x", typ) == ("x", expected)


def test_unknown_type_raises():
    with pytest.raises(ValueError):
        render_family_om(MetricFamily("x", "info", "", []))


def test_gauge_histogram_keeps_the_text_formats_sample_names():
    # OpenMetrics' gaugehistogram would be queue_gcount/queue_gsum: other series.
    f = MetricFamily("queue", GAUGE_HISTOGRAM, "", [Metric({}, count=2, sum=3.0, buckets=[(1.0, 2)])])
    assert render_family_om(f) == (
        b"# TYPE queue histogram\n"
        b'queue_bucket{le="1"} 2\nqueue_bucket{le="+Inf"} 2\nqueue_sum 3\nqueue_count 2\n')


def test_help_escaping():
    f = MetricFamily("g", GAUGE, 'a\\b\nc"d', [Metric({}, 1.0)])
    assert render_family_om(f).split(b"\n")[0] == b'# HELP g a\\\\b\\nc\\"d'
    (parsed,) = parse_om(om(f))
    assert parsed.documentation == 'a\\b\nc"d'


def test_timestamps_are_seconds():
    f = MetricFamily("g", GAUGE, "", [
        Metric({"a": "1"}, 1.0, timestamp_ms=1700000000123),
        Metric({"a": "2"}, 2.0),
        Metric({"a": "3 4"}, 3.0, timestamp_ms=-1),
        Metric({"a": "5"}, 5.0, timestamp_ms=0),
    ])
    assert render_family_om(f) == (
        b'# TYPE g gauge\ng{a="1"} 1 1700000000.123\ng{a="2"} 2\n'
        b'g{a="3 4"} 3 -0.001\ng{a="5"} 5 0.000\n')


def test_timestamps_on_every_line_of_a_histogram():
    f = MetricFamily("h", HISTOGRAM, "", [Metric({}, count=1, sum=1.0, buckets=[(1.0, 1)],
                                                 timestamp_ms=2500)])
    lines = render_family_om(f).decode().splitlines()[1:]
    assert all(line.endswith(" 2.500") for line in lines) and len(lines) == 4
    list(parse_om(om(f)))


def test_output_is_valid_utf8_even_with_stray_surrogates():
    f = MetricFamily("g", GAUGE, "h\udcff", [Metric({"a": "x\udcfe"}, 1.0)])
    body = render_family_om(f)
    assert body.decode("utf-8") == '# HELP g h\ufffd\n# TYPE g gauge\ng{a="x\ufffd"} 1\n'


def test_eof():
    assert EOF == b"# EOF\n"


def test_values_openmetrics_forbids_are_still_written_as_the_text_format_does():
    # Prometheus takes them; the series must be the text format's.
    families = [
        MetricFamily("c_total", COUNTER, "", [Metric({}, -1.0), Metric({"a": "b"}, NAN)]),
        MetricFamily("fh", HISTOGRAM, "", [Metric({}, count=2.5, sum=1.0, buckets=[(1.0, 0.5)])]),
        MetricFamily("bad", HISTOGRAM, "", [Metric({}, count=1, sum=-1.0, buckets=[(1.0, 5)])]),
        MetricFamily("s", SUMMARY, "", [Metric({}, count=1, sum=1.0, quantiles=[(2.0, -1.0)])]),
    ]
    for f in families:
        assert _samples(render_family_om(f)) == _samples(render_family(f))


def _samples(body: bytes) -> list[bytes]:
    return [line for line in body.split(b"\n") if line and not line.startswith(b"#")]


# ---------------------------------------------------------------- properties

names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,8}", fullmatch=True)
label_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in ("le", "quantile"))
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
nonneg = st.floats(0, 1e300)
counts = st.integers(0, 2**53)


@st.composite
def om_valid(draw):
    """A family whose values OpenMetrics allows for its type."""
    typ = draw(st.sampled_from([COUNTER, GAUGE, UNTYPED, SUMMARY, HISTOGRAM, GAUGE_HISTOGRAM]))
    name = draw(names)
    if typ == COUNTER and draw(st.booleans()):
        name += "_total"
    metrics = []
    seen = set()
    for _ in range(draw(st.integers(0, 3))):
        labels = draw(st.dictionaries(label_names, texts, max_size=3))
        key = tuple(sorted(labels.items()))
        if key in seen:
            continue
        seen.add(key)
        m = Metric(labels)
        if typ == COUNTER:
            m.value = draw(nonneg)
        elif typ in (GAUGE, UNTYPED):
            m.value = draw(st.floats())
        elif typ == SUMMARY:
            m.count, m.sum = draw(counts), draw(nonneg)
            qs = sorted(set(draw(st.lists(st.floats(0, 1), max_size=3))))
            m.quantiles = [(q, draw(nonneg)) for q in qs]
        else:
            bounds = sorted(set(draw(st.lists(st.floats(0, 1e9), max_size=3))))
            total = 0
            for ub in bounds:
                total += draw(st.integers(0, 1000))
                m.buckets.append((ub, total))
            m.count = total + draw(st.integers(0, 1000))
            m.sum = draw(nonneg)
        metrics.append(m)
    return MetricFamily(name, typ, draw(texts), metrics)


@given(om_valid())
@settings(max_examples=400)
def test_property_valid_and_same_series(family):
    parsed = list(parse_om(om(family)))
    assert sample_set(parsed) == text_sample_set(family)


@given(om_valid())
@settings(max_examples=200)
def test_property_sample_lines_are_the_text_formats(family):
    assert _samples(render_family_om(family)) == _samples(render_family(family))
