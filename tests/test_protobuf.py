"""Tests for the protobuf codec (pushgw.exposition.protobuf): delimited MetricFamily messages."""

from __future__ import annotations

import math
import re
import time

import pytest
import requests
from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from differential_scenarios import pb_family
from pushgw.exposition.protobuf import (
    ProtobufError,
    encode_family,
    encode_metrics,
    frame_family,
    parse_delimited,
    pb,
)
from pushgw.exposition.text_parser import parse_text
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
CT = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
T = pb.MetricType


def delimited(*messages) -> bytes:
    """Length-delimited messages, framed as Go's protodelim does (independent of pushgw)."""
    out = b""
    for msg in messages:
        data = msg.SerializeToString()
        out += _VarintBytes(len(data)) + data
    return out


def lp(**labels):
    return [pb.LabelPair(name=k, value=v) for k, v in labels.items()]


def sample_families() -> list[MetricFamily]:
    """One family of every kind the model can hold."""
    return [
        MetricFamily("c_total", COUNTER, "A counter.", [
            Metric({"code": "200", "method": "get"}, 5.0),
            Metric({"code": "500", "method": "get"}, 0.5),
        ]),
        MetricFamily("g", GAUGE, "", [Metric({}, -2.5), Metric({"x": "ü \"\n\\"}, INF)]),
        MetricFamily("u", UNTYPED, "multi\nline \\ help", [Metric({"a": ""}, -INF)]),
        MetricFamily("s", SUMMARY, "A summary.", [
            Metric({"svc": "j"}, count=7, sum=20.0, quantiles=[(0.5, 1.5), (0.99, 9.0)]),
            Metric({"svc": "k"}, count=2**64 - 1, sum=-1.0),
        ]),
        MetricFamily("h", HISTOGRAM, "A histogram.", [
            Metric({"l": "v"}, count=3, sum=4.5, buckets=[(0.5, 1), (1.0, 2), (INF, 3)]),
            Metric({"l": "w"}, count=0, sum=0.0, buckets=[]),
        ]),
        MetricFamily("fh", HISTOGRAM, "", [
            Metric({}, count=2.5, sum=1.0, buckets=[(0.5, 0.5), (1.0, 2.5)]),
        ]),
        MetricFamily("gh", GAUGE_HISTOGRAM, "A gauge histogram.", [
            Metric({"l": "v"}, count=4, sum=-3.0, buckets=[(-1.0, 1), (0.0, 2)]),
        ]),
        MetricFamily("ts", GAUGE, "", [Metric({"a": "b"}, 1.0, timestamp_ms=-1234)]),
    ]


def native_histogram(**overrides) -> pb.Histogram:
    """An integer native histogram as client_golang writes one."""
    fields = dict(
        sample_count=12,
        sample_sum=-3.25,
        schema=3,
        zero_threshold=2.938735877055719e-39,
        zero_count=2,
        negative_span=[pb.BucketSpan(offset=-2, length=2), pb.BucketSpan(offset=3, length=1)],
        negative_delta=[1, 2, -2],
        positive_span=[pb.BucketSpan(offset=0, length=3)],
        positive_delta=[2, -1, 1],
    )
    fields.update(overrides)
    return pb.Histogram(**fields)


# ---------------------------------------------------------------- the schema

# The message and field lines of client_model's io/prometheus/client/metrics.proto,
# transcribed separately from the descriptor code, as a second entry.
METRICS_PROTO = """
message LabelPair { optional string name = 1; optional string value = 2; }
message Gauge { optional double value = 1; }
message Counter { optional double value = 1; optional Exemplar exemplar = 2;
  optional google.protobuf.Timestamp created_timestamp = 3; }
message Quantile { optional double quantile = 1; optional double value = 2; }
message Summary { optional uint64 sample_count = 1; optional double sample_sum = 2;
  repeated Quantile quantile = 3; optional google.protobuf.Timestamp created_timestamp = 4; }
message Untyped { optional double value = 1; }
message Histogram { optional uint64 sample_count = 1; optional double sample_count_float = 4;
  optional double sample_sum = 2; repeated Bucket bucket = 3;
  optional google.protobuf.Timestamp created_timestamp = 15; optional sint32 schema = 5;
  optional double zero_threshold = 6; optional uint64 zero_count = 7;
  optional double zero_count_float = 8; repeated BucketSpan negative_span = 9;
  repeated sint64 negative_delta = 10; repeated double negative_count = 11;
  repeated BucketSpan positive_span = 12; repeated sint64 positive_delta = 13;
  repeated double positive_count = 14; repeated Exemplar exemplars = 16; }
message Bucket { optional uint64 cumulative_count = 1; optional double cumulative_count_float = 4;
  optional double upper_bound = 2; optional Exemplar exemplar = 3; }
message BucketSpan { optional sint32 offset = 1; optional uint32 length = 2; }
message Exemplar { repeated LabelPair label = 1; optional double value = 2;
  optional google.protobuf.Timestamp timestamp = 3; }
message Metric { repeated LabelPair label = 1; optional Gauge gauge = 2;
  optional Counter counter = 3; optional Summary summary = 4; optional Untyped untyped = 5;
  optional Histogram histogram = 7; optional int64 timestamp_ms = 6; }
message MetricFamily { optional string name = 1; optional string help = 2;
  optional MetricType type = 3; repeated Metric metric = 4; optional string unit = 5; }
"""

_SCALAR = {"string": 9, "double": 1, "uint64": 4, "int64": 3, "sint32": 17,
           "sint64": 18, "uint32": 13}


def _repeated(fd) -> bool:
    if hasattr(fd, "is_repeated"):  # protobuf >= 6; ``label`` is gone in 7
        return fd.is_repeated
    return fd.label == fd.LABEL_REPEATED


def test_descriptors_match_metrics_proto():
    messages = re.findall(r"message (\w+) \{(.*?)\}\s*(?=message|$)", METRICS_PROTO, re.S)
    assert len(messages) == 12
    for message, body in messages:
        fields = re.findall(r"(optional|repeated) ([\w.]+) (\w+) = (\d+);", body)
        desc = getattr(pb, message).DESCRIPTOR
        assert desc.full_name == f"io.prometheus.client.{message}"
        assert len(desc.fields) == len(fields), message
        for label, typ, name, number in fields:
            fd = desc.fields_by_name[name]
            assert fd.number == int(number), (message, name)
            assert _repeated(fd) == (label == "repeated"), (message, name)
            if typ in _SCALAR:
                assert fd.type == _SCALAR[typ], (message, name)
            elif typ == "MetricType":
                assert fd.enum_type.full_name == "io.prometheus.client.MetricType"
            else:
                assert fd.message_type.name == typ.rsplit(".", 1)[-1], (message, name)
    assert T == {"COUNTER": 0, "GAUGE": 1, "SUMMARY": 2, "UNTYPED": 3, "HISTOGRAM": 4,
                 "GAUGE_HISTOGRAM": 5}


def test_repeated_scalars_are_unpacked_as_in_proto2():
    # proto2 without [packed=true]: Go writes one tag per element; so do we.
    data = pb.Histogram(positive_delta=[1, 2]).SerializeToString()
    assert data == b"\x68\x02\x68\x04"


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("family", sample_families(), ids=lambda f: f.name)
def test_round_trip(family):
    parsed = parse_delimited(encode_family(family))
    assert list(parsed) == [family.name]
    assert parsed[family.name] == family
    for got, want in zip(parsed[family.name].metrics, family.metrics):
        assert list(got.labels.items()) == list(want.labels.items())  # order kept
        assert type(got.count) is type(want.count)


def test_round_trip_many_families_in_one_body():
    families = sample_families()
    body = b"".join(encode_family(f) for f in families)
    assert parse_delimited(body) == {f.name: f for f in families}


def test_nan_values_survive():
    family = MetricFamily("n", SUMMARY, "", [Metric({}, count=1, sum=NAN, quantiles=[(0.5, NAN)])])
    got = parse_delimited(encode_family(family))["n"].metrics[0]
    assert math.isnan(got.sum) and math.isnan(got.quantiles[0][1])
    assert encode_family(parse_delimited(encode_family(family))["n"]) == encode_family(family)


def test_encoding_matches_a_go_style_message():
    # What client_golang would send for the same family: name, help, type, then metrics.
    family = sample_families()[0]
    expected = delimited(pb.MetricFamily(
        name="c_total", help="A counter.", type=T["COUNTER"],
        metric=[
            pb.Metric(label=lp(code="200", method="get"), counter=pb.Counter(value=5.0)),
            pb.Metric(label=lp(code="500", method="get"), counter=pb.Counter(value=0.5)),
        ],
    ))
    assert encode_family(family) == expected


def test_empty_help_is_left_out_and_type_always_written():
    data = encode_family(MetricFamily("a", COUNTER, "", [Metric({}, 1.0)]))
    mf = pb.MetricFamily.FromString(data[1:])
    assert not mf.HasField("help") and mf.HasField("type") and mf.type == T["COUNTER"]


def test_frame_family_joins_metrics_of_several_groups():
    a = MetricFamily("x", GAUGE, "Help.", [Metric({"job": "a"}, 1.0), Metric({"job": "b"}, 2.0)])
    b = MetricFamily("x", GAUGE, "Help.", [Metric({"job": "c"}, 3.0)])
    body = frame_family("x", "Help.", GAUGE, encode_metrics(a) + encode_metrics(b))
    assert parse_delimited(body)["x"] == MetricFamily("x", GAUGE, "Help.", a.metrics + b.metrics)
    assert frame_family("x", "Help.", GAUGE, encode_metrics(a)) == encode_family(a)


def test_encode_metrics_is_concatenated_metric_fields():
    family = sample_families()[3]
    data = encode_metrics(family)
    mf = pb.MetricFamily.FromString(data)
    assert not mf.HasField("name") and len(mf.metric) == 2
    assert data[0] == 0x22  # field 4, wire type 2


def test_unknown_type_is_refused_by_the_encoder():
    with pytest.raises(ValueError):
        encode_family(MetricFamily("a", "info", "", [Metric({})]))


# ---------------------------------------------------------------- native histograms


def test_native_histogram_is_kept_verbatim():
    h = native_histogram(bucket=[pb.Bucket(upper_bound=1.0, cumulative_count=5)])
    body = delimited(pb.MetricFamily(name="nh", type=T["HISTOGRAM"], metric=[
        pb.Metric(label=lp(a="b"), histogram=h)]))
    m = parse_delimited(body)["nh"].metrics[0]
    assert m.native == h.SerializeToString()
    assert (m.count, m.sum, m.buckets, m.labels) == (12, -3.25, [(1.0, 5)], {"a": "b"})
    # decode -> encode -> decode keeps the bytes exactly
    again = parse_delimited(encode_family(parse_delimited(body)["nh"]))["nh"].metrics[0]
    assert again.native == m.native
    assert again == m


def test_native_histogram_is_emitted_from_native_not_from_fields():
    h = native_histogram()
    m = Metric({"a": "b"}, count=999, sum=1.0, native=h.SerializeToString())
    mf = pb.MetricFamily.FromString(encode_family(MetricFamily("nh", HISTOGRAM, "", [m]))[1:])
    assert mf.metric[0].histogram == h
    assert [(p.name, p.value) for p in mf.metric[0].label] == [("a", "b")]


def test_native_float_histogram_and_exemplars_survive():
    ex = pb.Exemplar(label=lp(trace_id="abc"), value=0.3)
    ex.timestamp.seconds = 1700000000
    h = pb.Histogram(
        sample_count_float=10.5, sample_sum=3.0, schema=-1, zero_threshold=0.001,
        zero_count_float=0.5, positive_span=[pb.BucketSpan(offset=1, length=2)],
        positive_count=[4.0, 6.0], exemplars=[ex],
    )
    h.created_timestamp.seconds = 1600000000
    body = delimited(pb.MetricFamily(name="fnh", type=T["GAUGE_HISTOGRAM"],
                                     metric=[pb.Metric(histogram=h)]))
    family = parse_delimited(body)["fnh"]
    assert family.type == GAUGE_HISTOGRAM
    m = family.metrics[0]
    assert m.count == 10.5 and type(m.count) is float and m.buckets == []
    assert pb.Histogram.FromString(m.native) == h
    assert encode_family(family) == body


def test_empty_native_histogram_with_noop_span():
    # client_golang marks a native histogram without observations by a no-op span.
    h = pb.Histogram(sample_count=0, sample_sum=0.0, schema=0, zero_threshold=0.0,
                     positive_span=[pb.BucketSpan(offset=0, length=0)])
    body = delimited(pb.MetricFamily(name="e", type=T["HISTOGRAM"], metric=[pb.Metric(histogram=h)]))
    assert parse_delimited(body)["e"].metrics[0].native == h.SerializeToString()


def test_classic_histogram_has_no_native():
    h = pb.Histogram(sample_count=1, sample_sum=1.0, bucket=[pb.Bucket(upper_bound=1.0, cumulative_count=1)])
    body = delimited(pb.MetricFamily(name="c", type=T["HISTOGRAM"], metric=[pb.Metric(histogram=h)]))
    assert parse_delimited(body)["c"].metrics[0].native is None


def test_float_histogram_counts_are_all_floats():
    h = pb.Histogram(sample_count_float=3.5, sample_sum=2.0, bucket=[
        pb.Bucket(upper_bound=0.5, cumulative_count_float=0.0),
        pb.Bucket(upper_bound=1.0, cumulative_count_float=1.5),
    ])
    body = delimited(pb.MetricFamily(name="f", type=T["HISTOGRAM"], metric=[pb.Metric(histogram=h)]))
    m = parse_delimited(body)["f"].metrics[0]
    assert m.count == 3.5 and m.buckets == [(0.5, 0.0), (1.0, 1.5)]
    assert all(type(c) is float for _, c in m.buckets)
    # only some bucket is float: the whole histogram is
    h = pb.Histogram(sample_count=3, bucket=[pb.Bucket(upper_bound=1.0, cumulative_count_float=2.5)])
    body = delimited(pb.MetricFamily(name="f", type=T["HISTOGRAM"], metric=[pb.Metric(histogram=h)]))
    m = parse_delimited(body)["f"].metrics[0]
    assert m.count == 3.0 and type(m.count) is float


# ---------------------------------------------------------------- framing


def test_empty_body_is_no_families():
    assert parse_delimited(b"") == {}


def test_zero_length_message_is_an_empty_family():
    assert parse_delimited(b"\x00") == {}


def test_families_without_metrics_are_dropped():
    body = delimited(pb.MetricFamily(name="a", type=T["GAUGE"]),
                     pb.MetricFamily(name="b", type=T["GAUGE"], metric=[pb.Metric(gauge=pb.Gauge(value=1))]))
    assert list(parse_delimited(body)) == ["b"]


def test_last_message_wins_for_a_repeated_name():
    first = pb.MetricFamily(name="a", type=T["GAUGE"], metric=[pb.Metric(gauge=pb.Gauge(value=1))])
    second = pb.MetricFamily(name="a", type=T["COUNTER"], help="h",
                             metric=[pb.Metric(counter=pb.Counter(value=2))])
    assert parse_delimited(delimited(first, second)) == {
        "a": MetricFamily("a", COUNTER, "h", [Metric({}, 2.0)])}
    # an invalid earlier message is replaced before it is checked, as in the official
    bad = pb.MetricFamily(name="a", type=T["GAUGE"], metric=[pb.Metric(counter=pb.Counter(value=1))])
    assert parse_delimited(delimited(bad, second))["a"].type == COUNTER
    # an empty last message removes the family
    assert parse_delimited(delimited(first, pb.MetricFamily(name="a"))) == {}


def _three_families() -> tuple[bytes, list[int], list[dict]]:
    """A body whose second message is > 127 bytes (two-byte length prefix)."""
    msgs = [
        pb.MetricFamily(name="a", type=T["GAUGE"], metric=[pb.Metric(gauge=pb.Gauge(value=1))]),
        pb.MetricFamily(name="b", type=T["COUNTER"], help="x" * 200,
                        metric=[pb.Metric(label=lp(k="v"), counter=pb.Counter(value=2))]),
        pb.MetricFamily(name="a", type=T["UNTYPED"], metric=[pb.Metric(untyped=pb.Untyped(value=3))]),
    ]
    ends, expected, body = [0], [{}], b""
    for i in range(len(msgs)):
        body += delimited(msgs[i])
        ends.append(len(body))
        expected.append(parse_delimited(delimited(*msgs[: i + 1])))
    return body, ends, expected


def test_truncation_at_every_byte():
    body, ends, expected = _three_families()
    assert body[ends[1]] >= 0x80  # the second prefix takes two bytes
    for cut in range(len(body) + 1):
        if cut in ends:
            assert parse_delimited(body[:cut]) == expected[ends.index(cut)], cut
        else:
            with pytest.raises(ProtobufError, match="truncated"):
                parse_delimited(body[:cut])


def test_truncated_message_message_says_so():
    with pytest.raises(ProtobufError, match=r"truncated message at byte 0: .* 10 bytes, 2 follow"):
        parse_delimited(b"\x0a\x0a\x01")


@pytest.mark.parametrize("body", [
    b"\xff" * 11,                 # length prefix longer than 64 bits
    b"\x01\x0e",                  # wire type 6
    b"\x01\x00",                  # field number 0
    b"\x04\x0a\x05ab\x00",        # string longer than its message
    b"\x02\x0b\x00",              # group start without end
    b"\x05\x22\x03\x0a\x05a",     # a metric whose label overruns the metric
    b"\x03\x18\xff\xff",          # truncated varint inside the message
])
def test_malformed_messages(body):
    with pytest.raises(ProtobufError):
        parse_delimited(body)


def test_unknown_fields_are_ignored():
    mf = pb.MetricFamily(name="a", type=T["GAUGE"], metric=[pb.Metric(gauge=pb.Gauge(value=1))])
    data = mf.SerializeToString() + b"\xa0\x06\x01"  # field 100, varint
    assert parse_delimited(_VarintBytes(len(data)) + data)["a"].metrics[0].value == 1.0


# ---------------------------------------------------------------- validation


def one(name="a", typ="GAUGE", **metric) -> bytes:
    if not metric:
        metric = {"gauge": pb.Gauge(value=1)}
    return delimited(pb.MetricFamily(name=name, type=T[typ], metric=[pb.Metric(**metric)]))


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "ä", "a\n"])
def test_invalid_metric_names(name):
    with pytest.raises(ProtobufError, match="invalid metric name"):
        parse_delimited(one(name))


@pytest.mark.parametrize("label", ["", "1a", "a-b", "a:b", "ä"])
def test_invalid_label_names(label):
    with pytest.raises(ProtobufError, match="invalid name"):
        parse_delimited(one(label=lp(**{label: "v"}), gauge=pb.Gauge(value=1)))


def test_reserved_label_names():
    with pytest.raises(ProtobufError, match="reserved"):
        parse_delimited(one(label=lp(__name__="x"), gauge=pb.Gauge(value=1)))


def test_valid_names():
    body = one("a:b_c9", label=lp(_x="1", B9="2"), gauge=pb.Gauge(value=1))
    assert parse_delimited(body)["a:b_c9"].metrics[0].labels == {"_x": "1", "B9": "2"}


def test_duplicate_label_names():
    labels = [pb.LabelPair(name="a", value="1"), pb.LabelPair(name="a", value="2")]
    with pytest.raises(ProtobufError, match="two or more labels named 'a'"):
        parse_delimited(one(label=labels, gauge=pb.Gauge(value=1)))


@pytest.mark.parametrize("typ,field,value,special", [
    ("SUMMARY", "summary", pb.Summary(), "quantile"),
    ("HISTOGRAM", "histogram", pb.Histogram(), "le"),
    ("GAUGE_HISTOGRAM", "histogram", pb.Histogram(), "le"),
])
def test_reserved_labels_of_summaries_and_histograms(typ, field, value, special):
    with pytest.raises(ProtobufError, match=f"explicit '{special}' label"):
        parse_delimited(one(typ=typ, label=lp(**{special: "0.5"}), **{field: value}))
    # the other one is fine
    other = "le" if special == "quantile" else "quantile"
    assert parse_delimited(one(typ=typ, label=lp(**{other: "1"}), **{field: value}))


@pytest.mark.parametrize("typ,field", [
    ("COUNTER", "gauge"), ("GAUGE", "counter"), ("UNTYPED", "gauge"),
    ("SUMMARY", "histogram"), ("HISTOGRAM", "summary"), ("GAUGE_HISTOGRAM", "untyped"),
])
def test_metric_without_the_value_of_its_type(typ, field):
    msg = {"gauge": pb.Gauge(value=1), "counter": pb.Counter(value=1),
           "untyped": pb.Untyped(value=1), "summary": pb.Summary(),
           "histogram": pb.Histogram()}[field]
    with pytest.raises(ProtobufError, match=r"a\{k=\"v\"\} has no \w+ value, but its family is a"):
        parse_delimited(one(typ=typ, label=lp(k="v"), **{field: msg}))


def test_type_defaults_to_counter_and_unknown_type_numbers_read_as_counter():
    # proto2 enums are closed: an unknown number is an unknown field (Go reads COUNTER too).
    mf = pb.MetricFamily(name="a", metric=[pb.Metric(counter=pb.Counter(value=1))])
    assert parse_delimited(delimited(mf))["a"].type == COUNTER
    data = mf.SerializeToString() + b"\x18\x09"  # type = 9
    assert parse_delimited(_VarintBytes(len(data)) + data)["a"].type == COUNTER


def test_invalid_utf8():
    def raw(name: bytes, help_: bytes, value: bytes) -> bytes:
        pair = b"\x0a\x01k\x12" + bytes([len(value)]) + value
        metric = b"\x0a" + bytes([len(pair)]) + pair + b"\x12\x00"
        data = (b"\x0a" + bytes([len(name)]) + name + b"\x12" + bytes([len(help_)]) + help_
                + b"\x18\x01\x22" + bytes([len(metric)]) + metric)
        return bytes([len(data)]) + data

    assert parse_delimited(raw(b"a", b"h", b"v"))["a"].metrics[0].labels == {"k": "v"}
    assert parse_delimited(raw(b"a", b"h\xff", b"v"))["a"].help == "h\ufffd"
    with pytest.raises(ProtobufError, match="not UTF-8"):
        parse_delimited(raw(b"a", b"h", b"\xff"))
    with pytest.raises(ProtobufError, match="invalid metric name"):
        parse_delimited(raw(b"a\xff", b"h", b"v"))


def test_timestamps_are_kept():
    body = one(gauge=pb.Gauge(value=1), timestamp_ms=1700000000123)
    assert parse_delimited(body)["a"].metrics[0].timestamp_ms == 1700000000123


# ---------------------------------------------------------------- properties

names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,8}", fullmatch=True)
label_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in ("le", "quantile"))
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
floats = st.floats(allow_nan=False)
counts = st.integers(0, 2**64 - 1)


@st.composite
def families(draw):
    typ = draw(st.sampled_from([COUNTER, GAUGE, UNTYPED, SUMMARY, HISTOGRAM, GAUGE_HISTOGRAM]))
    metrics = []
    for _ in range(draw(st.integers(1, 3))):
        m = Metric(draw(st.dictionaries(label_names, texts, max_size=3)))
        if typ in (COUNTER, GAUGE, UNTYPED):
            m.value = draw(floats)
        elif typ == SUMMARY:
            m.count, m.sum = draw(counts), draw(floats)
            m.quantiles = draw(st.lists(st.tuples(floats, floats), max_size=3))
        elif draw(st.booleans()):
            m.count, m.sum = draw(counts), draw(floats)
            m.buckets = draw(st.lists(st.tuples(floats, counts), max_size=3))
        else:
            positive = st.floats(0.001, 1e9)
            m.count, m.sum = draw(positive), draw(floats)
            m.buckets = draw(st.lists(st.tuples(floats, positive), max_size=3))
        if draw(st.booleans()):
            m.timestamp_ms = draw(st.integers(-(2**63), 2**63 - 1))
        metrics.append(m)
    return MetricFamily(draw(names), typ, draw(texts), metrics)


@given(families())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_property_round_trip(family):
    assert parse_delimited(encode_family(family)) == {family.name: family}


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_property_random_bytes_raise_only_protobuf_error(body):
    try:
        result = parse_delimited(body)
    except ProtobufError:
        return
    assert isinstance(result, dict)


_VALID = b"".join(encode_family(f) for f in sample_families()) + encode_family(
    MetricFamily("nh", HISTOGRAM, "", [Metric({}, native=native_histogram().SerializeToString())]))


@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255),
                          st.sampled_from(["set", "insert", "delete"])), min_size=1, max_size=4))
@settings(max_examples=2000)
def test_property_mutated_bodies_raise_only_protobuf_error(edits):
    body = bytearray(_VALID)
    for pos, byte, op in edits:
        pos = min(pos, len(body) - 1)
        if op == "set":
            body[pos] = byte
        elif op == "insert":
            body.insert(pos, byte)
        else:
            del body[pos]
    try:
        result = parse_delimited(bytes(body))
    except ProtobufError:
        return
    assume(result)
    for family in result.values():  # whatever decodes also encodes
        parse_delimited(encode_family(family))


# ---------------------------------------------------------------- other encoders


def test_hand_written_encoder_of_the_differential_suite():
    body = pb_family("g", "gauge", [({"a": "1"}, 1.5), ({"a": "2"}, -1.0)], help="Help.")
    body += pb_family("c_total", "counter", [({}, 3.0)])
    assert parse_delimited(body) == {
        "g": MetricFamily("g", GAUGE, "Help.", [Metric({"a": "1"}, 1.5), Metric({"a": "2"}, -1.0)]),
        "c_total": MetricFamily("c_total", COUNTER, "", [Metric({}, 3.0)]),
    }


def test_go_client_style_push_of_every_type():
    """Messages as client_golang's push package builds them: one delimited message per family."""
    body = delimited(
        pb.MetricFamily(name="requests_total", help="Requests.", type=T["COUNTER"], metric=[
            pb.Metric(label=lp(code="200"), counter=pb.Counter(value=1027)),
            pb.Metric(label=lp(code="400"), counter=pb.Counter(value=3)),
        ]),
        pb.MetricFamily(name="temperature", help="Temp.", type=T["GAUGE"], metric=[
            pb.Metric(gauge=pb.Gauge(value=21.5))]),
        pb.MetricFamily(name="rpc_seconds", help="RPC.", type=T["SUMMARY"], metric=[
            pb.Metric(summary=pb.Summary(sample_count=5, sample_sum=1.25, quantile=[
                pb.Quantile(quantile=0.5, value=0.2), pb.Quantile(quantile=0.9, value=0.4)]))]),
        pb.MetricFamily(name="size_bytes", help="Size.", type=T["HISTOGRAM"], metric=[
            pb.Metric(histogram=pb.Histogram(sample_count=4, sample_sum=300.0, bucket=[
                pb.Bucket(upper_bound=100, cumulative_count=2),
                pb.Bucket(upper_bound=1000, cumulative_count=4)]))]),
        pb.MetricFamily(name="legacy", type=T["UNTYPED"], metric=[pb.Metric(untyped=pb.Untyped(value=7))]),
    )
    text = (
        b"# HELP requests_total Requests.\n# TYPE requests_total counter\n"
        b'requests_total{code="200"} 1027\nrequests_total{code="400"} 3\n'
        b"# HELP temperature Temp.\n# TYPE temperature gauge\ntemperature 21.5\n"
        b"# HELP rpc_seconds RPC.\n# TYPE rpc_seconds summary\n"
        b'rpc_seconds{quantile="0.5"} 0.2\nrpc_seconds{quantile="0.9"} 0.4\n'
        b"rpc_seconds_sum 1.25\nrpc_seconds_count 5\n"
        b"# HELP size_bytes Size.\n# TYPE size_bytes histogram\n"
        b'size_bytes_bucket{le="100"} 2\nsize_bytes_bucket{le="1000"} 4\n'
        b'size_bytes_bucket{le="+Inf"} 4\nsize_bytes_sum 300\nsize_bytes_count 4\n'
        b"# TYPE legacy untyped\nlegacy 7\n"
    )
    parsed = parse_delimited(body)
    assert b"".join(render_family(f) for f in parsed.values()) == text


# ---------------------------------------------------------------- the official Pushgateway (Go)

SCRAPE_PROTOBUF = {"Accept": CT}


def _pushed(families: dict[str, MetricFamily], names) -> dict[str, MetricFamily]:
    return {n: families[n] for n in names}


def _for_official() -> list[MetricFamily]:
    """The sample families the Debian official (1.5.1) handles.

    It refuses timestamps; its client_model predates float histograms (it
    writes their counts as 0) and its text writer breaks off at gauge
    histograms (newer releases write them as histograms). Its text writer
    also shows a summary count of 2**64-1 as 2**63.
    """
    families = [f for f in sample_families() if f.name not in ("ts", "fh", "gh")]
    for f in families:
        for m in f.metrics:
            if type(m.count) is int and m.count >= 2**63:
                m.count = 2**53
    return families


def test_official_decodes_what_we_encode(clean_official):
    """Push our encoding to the Go gateway; its text exposition must be ours."""
    families = _for_official()
    families.append(MetricFamily("nh", HISTOGRAM, "Native.", [
        Metric({"a": "b"}, count=12, sum=-3.25, native=native_histogram().SerializeToString())]))
    body = b"".join(encode_family(f) for f in families)
    url = clean_official.url + "/metrics/job/pb/instance/i"
    r = requests.put(url, data=body, headers={"Content-Type": CT}, timeout=10)
    assert r.status_code == 200, r.text
    scraped = parse_text(requests.get(clean_official.url + "/metrics", timeout=10).content)
    for f in families:
        got = scraped[f.name]
        for m in f.metrics:
            m.labels = dict(sorted({**m.labels, "job": "pb", "instance": "i"}.items()))
        got.metrics.sort(key=lambda m: list(m.labels.items()))
        f.metrics.sort(key=lambda m: list(m.labels.items()))
        assert render_family(got) == render_family(f), f.name


def test_we_decode_the_officials_protobuf_exposition(clean_official):
    """Scrape the Go gateway in protobuf (client_golang's encoder) and in text: same families."""
    text = b"".join(render_family(f) for f in _for_official())
    url = clean_official.url + "/metrics/job/pb"
    assert requests.put(url, data=text, timeout=10).status_code == 200
    native = native_histogram()
    body = delimited(pb.MetricFamily(name="nh", type=T["HISTOGRAM"], metric=[pb.Metric(histogram=native)]))
    r = requests.put(url + "/instance/n", data=body, headers={"Content-Type": CT}, timeout=10)
    assert r.status_code == 200, r.text

    proto = requests.get(clean_official.url + "/metrics", headers=SCRAPE_PROTOBUF, timeout=10)
    assert proto.headers["Content-Type"].startswith("application/vnd.google.protobuf")
    from_proto = parse_delimited(proto.content)  # every family the official exposes
    from_text = parse_text(requests.get(clean_official.url + "/metrics", timeout=10).content)
    names = [f.name for f in _for_official()] + [
        "push_time_seconds", "push_failure_time_seconds"]
    assert _pushed(from_proto, names) == _pushed(from_text, names)
    assert pb.Histogram.FromString(from_proto["nh"].metrics[0].native) == native
    assert set(from_proto) == set(from_text)


# ---------------------------------------------------------------- speed


def test_decode_speed_10k_series():
    family = MetricFamily("m", GAUGE, "Help.", [
        Metric({"instance": f"i{i}", "job": "j", "shard": str(i % 7)}, i * 1.5) for i in range(10_000)])
    body = encode_family(family)
    best = min(_timed(parse_delimited, body) for _ in range(5))
    assert best < 0.5  # typically ~40 ms; generous for loaded CI machines
    assert len(parse_delimited(body)["m"].metrics) == 10_000


def _timed(fn, arg) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start
