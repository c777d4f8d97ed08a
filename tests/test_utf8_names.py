"""UTF-8 metric and label names (``--push.enable-utf8-names``).

Escaping tables from prometheus/common's model/metric_test.go (TestEscapeName,
TestValueUnescapeErrors); the rest checks each layer in both modes, then the
whole path through real pushgw processes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings, strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from pushgw.exposition.openmetrics import EOF
from pushgw.exposition.protobuf import ProtobufError, encode_family, parse_delimited
from pushgw.exposition.scrape import Exposition, Format
from pushgw.exposition.text_parser import ParseError, _parse, parse_text
from pushgw.grouping import GroupingError, parse_grouping_labels
from pushgw.handler.body import BodyError, parse_families
from pushgw.handler.negotiation import content_type, negotiate_scrape
from pushgw.model import COUNTER, GAUGE, HISTOGRAM, Metric, MetricFamily
from pushgw.names import (
    DEFAULT_ESCAPING,
    Escaping,
    escape_name,
    escaping_from_param,
    is_utf8_name,
    unescape_name,
)
from pushgw.storage.consistency import Inconsistency, ReservedFamily, check_families, check_label_names
from pushgw.storage.store import MetricStore, PushRejected

sys.path.insert(0, str(Path(__file__).parent))
from servers import start_pushgw  # noqa: E402

PROTO_CT = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"

# ---- escaping: prometheus/common's tables --------------------------------------

# input, underscores, dots, dots unescaped, values
ESCAPE_TABLE = [
    ("", "", "", "", ""),
    ("no:escaping_required", "no:escaping_required", "no:escaping__required",
     "no:escaping_required", "no:escaping_required"),
    ("mysystem.prod.west.cpu.load", "mysystem_prod_west_cpu_load",
     "mysystem_dot_prod_dot_west_dot_cpu_dot_load", "mysystem.prod.west.cpu.load",
     "U__mysystem_2e_prod_2e_west_2e_cpu_2e_load"),
    ("mysystem.prod.west.cpu.load_total", "mysystem_prod_west_cpu_load_total",
     "mysystem_dot_prod_dot_west_dot_cpu_dot_load__total", "mysystem.prod.west.cpu.load_total",
     "U__mysystem_2e_prod_2e_west_2e_cpu_2e_load__total"),
    ("http.status:sum", "http_status:sum", "http_dot_status:sum", "http.status:sum",
     "U__http_2e_status:sum"),
    ("label with 😱", "label_with__", "label__with____", "label_with__",
     "U__label_20_with_20__1f631_"),
    ("花火", "__", "____", "__", "U___82b1__706b_"),
    ("label with \u0100", "label_with__", "label__with____", "label_with__",
     "U__label_20_with_20__100_"),
]


@pytest.mark.parametrize("name, underscores, dots, dots_back, values", ESCAPE_TABLE)
def test_escape_name(name, underscores, dots, dots_back, values):
    assert escape_name(name, Escaping.UNDERSCORES) == underscores
    assert unescape_name(underscores, Escaping.UNDERSCORES) == underscores  # not reversible
    assert escape_name(name, Escaping.DOTS) == dots
    assert unescape_name(dots, Escaping.DOTS) == dots_back
    assert escape_name(name, Escaping.VALUES) == values
    assert unescape_name(values, Escaping.VALUES) == name  # always reversible
    assert escape_name(name, Escaping.ALLOW_UTF8) == name


@pytest.mark.parametrize("escaped, expected", [
    ("", ""),
    ("U__no:unescapingrequired", "no:unescapingrequired"),
    ("U__capitals_2E_ok", "capitals.ok"),
    ("U__underscores__doubled__", "underscores_doubled_"),
    ("U__underscores_doubled_", "U__underscores_doubled_"),
    ("U__underscores__doubled_", "U__underscores__doubled_"),
    ("U__my__hack_2e_attempt_872348732fabdabbab_", "U__my__hack_2e_attempt_872348732fabdabbab_"),
    ("U__my__hack_2e", "U__my__hack_2e"),
    ("U__bad__utf_2eg_", "U__bad__utf_2eg_"),
    ("U__bad__utf_D900_", "U__bad__utf_D900_"),
    # The official README's examples.
    ("U__foo_2e_bar", "foo.bar"),
    ("U___55_____", "U__"),
    ("U__in_xxx_valid", "U__in_xxx_valid"),
    # Go's edge cases: at most five hex digits, "U__" alone is the empty name,
    # no prefix means nothing to undo, Go's byte lower-casing maps \x10 to '0'.
    ("U___1f631_", "😱"),
    ("U___10ffff_", "U___10ffff_"),
    ("U___fffff_", "\U000fffff"),
    ("U__", ""),
    ("my.label", "my.label"),
    ("U__a_\x101_b", "a\x01b"),
    ("U__a_é_b", "U__a_é_b"),
])
def test_unescape_values(escaped, expected):
    assert unescape_name(escaped, Escaping.VALUES) == expected


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), max_codepoint=0xFFFFF)))
def test_values_escaping_round_trips(name):
    """Round trip, except code points from U+100000 on: six hex digits, which Go's
    UnescapeName refuses too (see test_unescape_values)."""
    escaped = escape_name(name, Escaping.VALUES)
    if not name.startswith("U__"):  # a legacy name that looks escaped stays as it is (as in Go)
        assert unescape_name(escaped, Escaping.VALUES) == name
    assert escaped == "" or escaped == name or escaped.startswith("U__")
    for scheme in (Escaping.UNDERSCORES, Escaping.DOTS, Escaping.VALUES):
        out = escape_name(name, scheme)
        assert out == "" or all(c.isascii() and (c.isalnum() or c in "_:") for c in out)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=6))
def test_utf8_path_parsing_only_raises_grouping_errors(components):
    try:
        result = parse_grouping_labels("j", False, "/" + "/".join(components), True)
    except GroupingError:
        return
    assert all(is_utf8_name(k) and not k.startswith("__") for k in result)


def test_escaping_params():
    assert DEFAULT_ESCAPING is Escaping.UNDERSCORES  # prometheus/common v0.69's NameEscapingScheme
    assert escaping_from_param("allow-utf-8") is Escaping.ALLOW_UTF8
    assert escaping_from_param("values") is Escaping.VALUES
    assert escaping_from_param("Values") is None and escaping_from_param("") is None
    assert is_utf8_name("my.metric") and is_utf8_name("花火") and is_utf8_name("1")
    assert not is_utf8_name("") and not is_utf8_name("a\udcff")


# ---- grouping keys in push paths -------------------------------------------------

def labels(path: str, utf8: bool) -> dict[str, str]:
    return parse_grouping_labels("j", False, path, utf8)


def test_path_label_names_with_the_flag():
    assert labels("/U__my_2e_label/v", True) == {"my.label": "v", "job": "j"}
    assert labels("/U__my_2e_label@base64/YmF6", True) == {"my.label": "baz", "job": "j"}
    assert labels("/my.label/v", True) == {"my.label": "v", "job": "j"}  # raw UTF-8 is fine too
    assert labels("/U___55_____/v", True) == {"U__": "v", "job": "j"}
    assert labels("/U__in_xxx_valid/v", True) == {"U__in_xxx_valid": "v", "job": "j"}
    assert labels("/a/1/U__b_2e_c/2", True) == {"a": "1", "b.c": "2", "job": "j"}
    assert labels("/1abc/v", True) == {"1abc": "v", "job": "j"}


@pytest.mark.parametrize("path", ["/__x/v", "/__name__/v", "/U__/v", "/U______x/v", "/@base64/YQ"])
def test_path_label_names_with_the_flag_rejected(path):
    with pytest.raises(GroupingError, match="improper label name"):
        labels(path, True)


def test_path_label_names_without_the_flag():
    # U__... is a legacy-valid name: taken literally, as the official does.
    assert labels("/U__my_2e_label/v", False) == {"U__my_2e_label": "v", "job": "j"}
    for path in ("/my.label/v", "/1abc/v", "/__x/v", "/a-b/v"):
        with pytest.raises(GroupingError, match="improper label name"):
            labels(path, False)


# ---- the text parser ----------------------------------------------------------------

UTF8_BODY = (
    b'# HELP "my.metric" A metric with a dot.\n'
    b'# TYPE "my.metric" gauge\n'
    b'{"my.metric", "other.label"="x"} 1\n'
    b'{"other.label"="y", "my.metric"} 2\n'
    b'# TYPE "h.x" histogram\n'
    b'{"h.x_bucket","a.b"="1",le="1"} 1\n'
    b'{"h.x_bucket","a.b"="1",le="+Inf"} 2\n'
    b'{"h.x_sum","a.b"="1"} 3\n'
    b'{"h.x_count","a.b"="1"} 2\n'
    b'legacy{"\xe8\x8a\xb1"="z",plain="p"} 4\n'
)


@pytest.mark.parametrize("fast", [True, False])
def test_parser_with_the_flag(fast):
    families = _parse(UTF8_BODY, fast, True)
    assert set(families) == {"my.metric", "h.x", "legacy"}
    g = families["my.metric"]
    assert (g.type, g.help) == (GAUGE, "A metric with a dot.")
    assert [(m.labels, m.value) for m in g.metrics] == [({"other.label": "x"}, 1.0), ({"other.label": "y"}, 2.0)]
    h = families["h.x"].metrics[0]
    assert (h.labels, h.buckets, h.sum, h.count) == ({"a.b": "1"}, [(1.0, 1), (float("inf"), 2)], 3.0, 2)
    assert families["legacy"].metrics[0].labels == {"花": "z", "plain": "p"}


@pytest.mark.parametrize("body, message", [
    (b'{"my.metric"} 1\n', 'invalid metric name "my.metric"'),
    (b'# TYPE "my.metric" gauge\n', 'invalid metric name "my.metric"'),
    (b'a{"other.label"="x"} 1\n', 'invalid label name "other.label"'),
    (b'"1a" 1\n', 'invalid metric name "1a"'),
])
def test_parser_without_the_flag(body, message):
    for fast in (True, False):
        with pytest.raises(ParseError, match=message):
            _parse(body, fast, False)
    with pytest.raises(ParseError, match=message):
        parse_text(body)


def test_quoted_legacy_names_need_no_flag():
    assert parse_text(b'{"a", "b"="c"} 1\n')["a"].metrics[0].labels == {"b": "c"}


@pytest.mark.parametrize("body, message", [
    (b'{"\xff"} 1\n', r'invalid metric name "\\xff"'),
    (b'{"a", "\xff"="x"} 1\n', r'invalid label name "\\xff"'),
    (b'{""} 1\n', 'invalid label name for metric ""'),
    (b'a{""="x"} 1\n', 'invalid label name for metric "a"'),
    (b'a{"__name__"="x"} 1\n', 'label name "__name__" is reserved'),
    (b'{"a.b", "c.d"} 1\n', 'multiple metric names for metric "a.b"'),
])
def test_parser_with_the_flag_still_rejects(body, message):
    for fast in (True, False):
        with pytest.raises(ParseError, match=message):
            _parse(body, fast, True)


# ---- protobuf ---------------------------------------------------------------------------

def test_protobuf_names_follow_the_mode():
    body = encode_family(MetricFamily("my.metric", GAUGE, "h", [Metric({"a.b": "x"}, 1.0)]))
    got = parse_delimited(body, utf8_names=True)["my.metric"]
    assert got.metrics[0].labels == {"a.b": "x"}
    with pytest.raises(ProtobufError, match="invalid metric name"):
        parse_delimited(body)
    label_only = encode_family(MetricFamily("m", GAUGE, "", [Metric({"a.b": "x"}, 1.0)]))
    with pytest.raises(ProtobufError, match="invalid name"):
        parse_delimited(label_only)
    # A name accepted in UTF-8 mode is not remembered as valid for the legacy mode.
    assert parse_delimited(label_only, utf8_names=True)["m"].metrics[0].labels == {"a.b": "x"}
    with pytest.raises(ProtobufError, match="invalid name"):
        parse_delimited(label_only)
    reserved = encode_family(MetricFamily("m", GAUGE, "", [Metric({"__x.y": "x"}, 1.0)]))
    with pytest.raises(ProtobufError, match="reserved"):
        parse_delimited(reserved, utf8_names=True)


def test_parse_families_passes_the_mode():
    assert "my.metric" in parse_families(b'{"my.metric"} 1\n', "", True)
    with pytest.raises(BodyError):
        parse_families(b'{"my.metric"} 1\n', "")
    body = encode_family(MetricFamily("my.metric", GAUGE, "", [Metric({}, 1.0)]))
    assert "my.metric" in parse_families(body, PROTO_CT, True)
    with pytest.raises(BodyError):
        parse_families(body, PROTO_CT)


# ---- the consistency check ------------------------------------------------------------

def test_consistency_label_names_follow_the_mode():
    def check(name, label, utf8):
        family = MetricFamily(name, GAUGE, "", [Metric({label: "v"}, 1.0)])
        check_label_names(name, {label}, utf8)
        check_families({name: family}, lambda _: None, {}, utf8)

    check("m", "a.b", True)
    check("my.metric", "b", True)
    with pytest.raises(Inconsistency, match="invalid name: a.b"):
        check("m", "a.b", False)
    with pytest.raises(Inconsistency, match="not a valid metric name"):
        check("my.metric", "b", False)
    for utf8 in (True, False):
        with pytest.raises(Inconsistency, match="invalid name: __x"):
            check("m", "__x", utf8)
    with pytest.raises(Inconsistency, match="invalid name: __x.y"):
        check("m", "__x.y", True)


# ---- the store and the scrape formats ---------------------------------------------------

def utf8_store(**kw) -> MetricStore:
    store = MetricStore(utf8_names=True, **kw)
    grouping = parse_grouping_labels("j", False, "/U__my_2e_label/v", True)
    store.push(grouping, parse_text(UTF8_BODY, True), True)
    return store


def test_store_refuses_utf8_names_in_legacy_mode():
    store = MetricStore()
    with pytest.raises(PushRejected, match="invalid name: my.label"):
        store.push({"job": "j", "my.label": "v"}, parse_text(b"a 1\n"), True)


def text_samples(body: bytes) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
        if not s.name.startswith("push_")
    }


GROUP = (("instance", ""), ("job", "j"))


def test_text_scrape_quoted_with_allow_utf8():
    store = utf8_store()
    body = Exposition(store).render(Format.TEXT, [], Escaping.ALLOW_UTF8)
    assert body == store.render()  # the stored bytes themselves
    assert b'{"my.metric",instance="",job="j","my.label"="v","other.label"="x"} 1\n' in body
    assert b'# TYPE "my.metric" gauge\n' in body
    samples = text_samples(body)
    assert samples[("my.metric", (*GROUP, ("my.label", "v"), ("other.label", "x")))] == 1.0
    assert samples[("legacy", (*GROUP, ("my.label", "v"), ("plain", "p"), ("花", "z")))] == 4.0


def test_text_scrape_escaped_with_underscores_by_default():
    store = utf8_store()
    body = Exposition(store).render(Format.TEXT, [])
    assert b"# HELP my_metric A metric with a dot.\n# TYPE my_metric gauge\n" in body
    assert b'my_metric{instance="",job="j",my_label="v",other_label="x"} 1\n' in body
    assert b'h_x_bucket{a_b="1",instance="",job="j",my_label="v",le="+Inf"} 2\n' in body
    assert b'legacy{instance="",job="j",my_label="v",plain="p",_="z"} 4\n' in body
    assert b'push_time_seconds{instance="",job="j",my_label="v"} ' in body
    # Readable by a legacy parser (ours without the flag).
    assert set(parse_text(body)) == {"my_metric", "h_x", "legacy", "push_time_seconds",
                                     "push_failure_time_seconds"}


def test_text_scrape_values_and_dots():
    store = utf8_store()
    values = Exposition(store).render(Format.TEXT, [], Escaping.VALUES)
    assert b'U__my_2e_metric{instance="",job="j",U__my_2e_label="v",U__other_2e_label="x"} 1\n' in values
    assert b'legacy{instance="",job="j",U__my_2e_label="v",plain="p",U___82b1_="z"} 4\n' in values
    dots = Exposition(store).render(Format.TEXT, [], Escaping.DOTS)
    # Only names that are not legacy-valid are escaped (Go's EscapeMetricFamily).
    assert b'my_dot_metric{instance="",job="j",my_dot_label="v",other_dot_label="x"} 1\n' in dots


def test_openmetrics_scrape():
    store = utf8_store()
    exposition = Exposition(store)
    quoted = exposition.render(Format.OPENMETRICS, [], Escaping.ALLOW_UTF8)
    assert quoted.endswith(EOF)
    assert b'# TYPE "my.metric" gauge\n{"my.metric",instance="",job="j","my.label"="v","other.label"="x"} 1\n' in quoted
    escaped = exposition.render(Format.OPENMETRICS, [], Escaping.UNDERSCORES)
    names = {f.name for f in om_families(escaped.decode())}
    assert {"my_metric", "h_x", "legacy"} <= names


def test_protobuf_scrape():
    store = utf8_store()
    exposition = Exposition(store)
    quoted = parse_delimited(exposition.render(Format.PROTOBUF, [], Escaping.ALLOW_UTF8), True)
    assert quoted["my.metric"].metrics[0].labels == {
        "instance": "", "job": "j", "my.label": "v", "other.label": "x"}
    assert quoted["my.metric"].help == "A metric with a dot."
    escaped = parse_delimited(exposition.render(Format.PROTOBUF, []))  # legacy names only
    assert escaped["my_metric"].metrics[0].labels == {
        "instance": "", "job": "j", "my_label": "v", "other_label": "x"}
    assert escaped["h_x"].type == HISTOGRAM and escaped["h_x"].metrics[0].count == 2


def test_native_histogram_keeps_its_data_when_escaped():
    pb = pytest.importorskip("pushgw.exposition.protobuf")
    native = pb._MetricFamilyPB()
    h = native.metric.add().histogram
    h.schema = 0
    h.zero_threshold = 1e-128
    h.sample_count = 1
    h.sample_sum = 1.5
    native.name = "nh.seconds"
    native.type = 4
    native.metric[0].label.add(name="a.b", value="x")
    data = native.SerializeToString()
    body = pb._uvarint(len(data)) + data
    store = MetricStore(utf8_names=True)
    store.push({"job": "j"}, parse_delimited(body, True), True)
    out = parse_delimited(Exposition(store).render(Format.PROTOBUF, []))
    m = out["nh_seconds"].metrics[0]
    assert m.labels == {"a_b": "x", "instance": "", "job": "j"} and m.native is not None


def test_own_family_with_pushed_utf8_labels():
    own = MetricFamily("pushgateway_build_info", GAUGE, "build info", [Metric({"version": "1"}, 1.0)])
    store = MetricStore(
        reserved={own.name: ReservedFamily(GAUGE, own.help, strict_help=False)}, utf8_names=True)
    store.push({"job": "j"}, parse_text(b'# TYPE pushgateway_build_info gauge\npushgateway_build_info{"a.b"="x"} 1\n', True), True)
    exposition = Exposition(store)
    text = exposition.render(Format.TEXT, [own])
    assert b'pushgateway_build_info{version="1"} 1\npushgateway_build_info{a_b="x",instance="",job="j"} 1\n' in text
    assert b'{"a.b"="x"' not in text
    quoted = exposition.render(Format.TEXT, [own], Escaping.ALLOW_UTF8)
    assert b'pushgateway_build_info{"a.b"="x",instance="",job="j"} 1\n' in quoted
    proto = parse_delimited(exposition.render(Format.PROTOBUF, [own]))
    assert [m.labels for m in proto[own.name].metrics] == [
        {"version": "1"}, {"a_b": "x", "instance": "", "job": "j"}]
    om = exposition.render(Format.OPENMETRICS, [own])
    assert b'pushgateway_build_info{a_b="x",instance="",job="j"} 1\n' in om


def test_legacy_store_keeps_the_zero_copy_text_path():
    store = MetricStore(utf8_names=True)
    store.push({"job": "j"}, parse_text(b'a{b="c"} 1\n# TYPE c counter\nc 2\n', True), True)
    exposition = Exposition(store)
    for escaping in Escaping:
        assert exposition.render(Format.TEXT, [], escaping) == store.render()
        exposition.render(Format.PROTOBUF, [], escaping)
        exposition.render(Format.OPENMETRICS, [], escaping)
    assert not any(len(key) == 3 for key in exposition._blocks)  # no escaped blocks
    assert not any(store.merged(n).utf8 for n in store.family_names())


def test_escaped_blocks_are_cached_until_the_family_changes():
    store = utf8_store()
    exposition = Exposition(store)
    first = exposition.render(Format.TEXT, [])
    key = (Format.TEXT, "my.metric", Escaping.UNDERSCORES)
    block = exposition._blocks[key][1]
    assert exposition.render(Format.TEXT, []) == first and exposition._blocks[key][1] is block
    store.push({"job": "k"}, parse_text(b'# TYPE "my.metric" gauge\n{"my.metric", "other.label"="z"} 5\n', True), True)
    assert b'my_metric{instance="",job="k",other_label="z"} 5\n' in exposition.render(Format.TEXT, [])


# ---- negotiation ------------------------------------------------------------------------

PROMETHEUS3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


@pytest.mark.parametrize("accept, fmt, escaping", [
    ("", Format.TEXT, Escaping.UNDERSCORES),
    ("text/plain;version=0.0.4", Format.TEXT, Escaping.UNDERSCORES),
    ("text/plain;version=0.0.4;escaping=allow-utf-8", Format.TEXT, Escaping.ALLOW_UTF8),
    ("text/plain;escaping=values", Format.TEXT, Escaping.VALUES),
    ("text/plain;escaping=dots", Format.TEXT, Escaping.DOTS),
    ("text/plain;escaping=bogus", Format.TEXT, Escaping.UNDERSCORES),
    (PROMETHEUS3_ACCEPT, Format.OPENMETRICS, Escaping.ALLOW_UTF8),
    # Go carries the parameter of an entry it passed over on to the chosen one.
    ("application/json;escaping=allow-utf-8;q=0.9,text/plain;q=0.5", Format.TEXT, Escaping.ALLOW_UTF8),
    ("application/json;escaping=values", Format.TEXT, Escaping.VALUES),
    (PROTO_CT.replace(" ", "") + ";escaping=allow-utf-8", Format.PROTOBUF, Escaping.ALLOW_UTF8),
    (PROTO_CT + ";q=0.9," + "text/plain;escaping=allow-utf-8;q=0.5", Format.PROTOBUF, Escaping.UNDERSCORES),
])
def test_negotiation(accept, fmt, escaping):
    assert negotiate_scrape(accept) == (fmt, escaping)


def test_content_type_names_the_escaping():
    assert content_type(Format.TEXT, Escaping.UNDERSCORES) == (
        "text/plain; version=0.0.4; charset=utf-8; escaping=underscores")
    assert content_type(Format.PROTOBUF, Escaping.ALLOW_UTF8) == PROTO_CT + "; escaping=allow-utf-8"


# ---- through real processes ---------------------------------------------------------------

PATH = "/metrics/job/j/U__my_2e_label/v"
BODY = b'{"my.metric", "other.label"="x"} 1\n'


def pushed(body: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
        if not s.name.startswith(("process_", "python_", "pushgateway_", "push_"))
    }


@pytest.fixture(scope="module")
def utf8_gw():
    with start_pushgw("--push.enable-utf8-names") as gw:
        yield gw


@pytest.fixture(scope="module")
def legacy_gw():
    with start_pushgw() as gw:
        yield gw


def test_http_push_and_scrape_with_the_flag(utf8_gw):
    url = utf8_gw.url
    r = requests.put(url + PATH, data=BODY)
    assert r.status_code == 200, r.text

    r = requests.get(url + "/metrics", headers={"Accept": "text/plain;version=0.0.4;escaping=allow-utf-8"})
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8; escaping=allow-utf-8"
    assert '{"my.metric",instance="",job="j","my.label"="v","other.label"="x"} 1\n' in r.text
    assert pushed(r.text) == {
        ("my.metric", (("instance", ""), ("job", "j"), ("my.label", "v"), ("other.label", "x"))): 1.0}

    r = requests.get(url + "/metrics")
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
    assert 'my_metric{instance="",job="j",my_label="v",other_label="x"} 1\n' in r.text
    assert pushed(r.text) == {
        ("my_metric", (("instance", ""), ("job", "j"), ("my_label", "v"), ("other_label", "x"))): 1.0}

    r = requests.get(url + "/metrics", headers={"Accept": PROTO_CT, "Accept-Encoding": "gzip"})
    assert r.headers["content-type"] == PROTO_CT + "; escaping=underscores"
    assert parse_delimited(r.content)["my_metric"].metrics[0].labels["my_label"] == "v"

    r = requests.get(url + "/metrics", headers={"Accept": PROMETHEUS3_ACCEPT})
    assert r.headers["content-type"] == (
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8")
    assert '{"my.metric",instance="",job="j","my.label"="v","other.label"="x"} 1\n' in r.text

    api = requests.get(url + "/api/v1/metrics").json()["data"]
    group = next(g for g in api if g["labels"].get("my.label") == "v")
    assert group["labels"] == {"job": "j", "my.label": "v"}
    assert group["my.metric"]["metrics"][0]["labels"]["other.label"] == "x"

    # The same group, addressed with the escaped or the raw name.
    assert requests.post(url + "/metrics/job/j/my.label/v", data=b'{"my.metric", "other.label"="y"} 2\n').status_code == 200
    assert len(pushed(requests.get(url + "/metrics").text)) == 1
    assert requests.delete(url + PATH).status_code == 202
    assert pushed(requests.get(url + "/metrics").text) == {}


def test_http_rejections_with_the_flag(utf8_gw):
    url = utf8_gw.url
    for path in ("/metrics/job/j/U______x/v", "/metrics/job/j/__x/v", "/metrics/job/j/U__/v"):
        r = requests.put(url + path, data=b"a 1\n")
        assert r.status_code == 400 and "improper label name" in r.text, (path, r.text)
    r = requests.put(url + "/metrics/job/j", data=b'{"\xff"} 1\n')
    assert r.status_code == 400 and "invalid metric name" in r.text


def test_http_without_the_flag(legacy_gw):
    url = legacy_gw.url
    r = requests.put(url + PATH, data=BODY)
    assert r.status_code == 400 and 'invalid metric name "my.metric"' in r.text
    r = requests.put(url + "/metrics/job/j/my.label/v", data=b"a 1\n")
    assert r.status_code == 400 and "improper label name" in r.text
    r = requests.put(url + "/metrics/job/j", data=b'a{"other.label"="x"} 1\n')
    assert r.status_code == 400 and 'invalid label name "other.label"' in r.text
    body = encode_family(MetricFamily("my.metric", COUNTER, "", [Metric({}, 1.0)]))
    r = requests.put(url + "/metrics/job/j", data=body, headers={"Content-Type": PROTO_CT})
    assert r.status_code == 400 and "invalid metric name" in r.text
    # U__my_2e_label is a legacy name: without the flag it is taken literally.
    assert requests.put(url + PATH, data=b"a 1\n").status_code == 200
    r = requests.get(url + "/metrics", headers={"Accept": "text/plain;escaping=allow-utf-8"})
    assert r.headers["content-type"].endswith("; escaping=allow-utf-8")
    assert pushed(r.text) == {("a", (("U__my_2e_label", "v"), ("instance", ""), ("job", "j"))): 1.0}
    assert requests.delete(url + PATH).status_code == 202


def test_persisted_utf8_names_survive_a_restart_without_the_flag(tmp_path):
    db = f"--persistence.file={tmp_path / 'pushgw.db'}"
    with start_pushgw("--push.enable-utf8-names", db) as gw:
        assert requests.put(gw.url + PATH, data=BODY).status_code == 200
    with start_pushgw(db) as gw:
        r = requests.get(gw.url + "/metrics")
        assert 'my_metric{instance="",job="j",my_label="v",other_label="x"} 1\n' in r.text
        r = requests.get(gw.url + "/metrics", headers={"Accept": "text/plain;escaping=allow-utf-8"})
        assert '{"my.metric",instance="",job="j","my.label"="v","other.label"="x"} 1\n' in r.text
        assert requests.put(gw.url + PATH, data=BODY).status_code == 400
        assert requests.delete(gw.url + "/metrics/job/j/my.label/v").status_code == 400


def test_legacy_prometheus_scrapes_escaped_names(tmp_path):
    """Prometheus 2.x asks for no escaping: it gets (and stores) underscore-escaped names."""
    import time

    from servers import start_prometheus

    with start_pushgw("--push.enable-utf8-names") as gw:
        assert requests.put(gw.url + PATH, data=BODY).status_code == 200
        target = gw.url.split("://", 1)[1]
        config = (
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: pushgateway\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        with start_prometheus(config, tmp_path) as prom:
            deadline = time.monotonic() + 30
            result = []
            while time.monotonic() < deadline and not result:
                r = requests.get(prom.url + "/api/v1/query", params={"query": "my_metric"}, timeout=5)
                result = r.json()["data"]["result"]
                time.sleep(0.5)
            assert len(result) == 1, result
            assert result[0]["metric"] == {
                "__name__": "my_metric", "job": "j", "my_label": "v", "other_label": "x"}
            assert result[0]["value"][1] == "1"
            up = requests.get(prom.url + "/api/v1/query", params={"query": "up"}, timeout=5).json()
            assert [s["value"][1] for s in up["data"]["result"]] == ["1"]


def test_a_label_name_with_a_colon_is_read_back_and_survives_a_restart(tmp_path):
    """"a:b" is a valid UTF-8 label name but not a legacy one. It is written unquoted,
    as Go's writeName does for any legacy-valid *metric* name, and pushgw must read its
    own rendering back: the JSON API answered 500 and a restart never became ready."""
    db = f"--persistence.file={tmp_path / 'pushgw.db'}"
    with start_pushgw("--push.enable-utf8-names", db) as gw:
        r = requests.put(gw.url + "/metrics/job/c", data=b'm{"a:b"="1"} 1\n')
        assert r.status_code == 200, r.text
        r = requests.put(gw.url + "/metrics/job/c", data=b'm{a:b="1"} 1\n')  # unquoted: still not a pushed body
        assert r.status_code == 400 and "expected '=' after label name" in r.text
        api = requests.get(gw.url + "/api/v1/metrics")
        assert api.status_code == 200, api.text
        group = next(g for g in api.json()["data"] if g["labels"] == {"job": "c"})
        assert group["m"]["metrics"][0]["labels"]["a:b"] == "1"
    with start_pushgw("--push.enable-utf8-names", db) as gw:  # ready, with the group
        assert 'm{a:b="1",instance="",job="c"} 1\n' in requests.get(gw.url + "/metrics").text
        assert requests.get(gw.url + "/api/v1/metrics").status_code == 200


def test_the_rendered_reading_takes_what_the_renderer_writes():
    text = b'# TYPE m counter\nm{a:b="1",x="2"} 3\n'
    with pytest.raises(ParseError, match="expected '=' after label name"):
        parse_text(text, utf8_names=True)
    family = parse_text(text, utf8_names=True, rendered=True)["m"]
    assert family.metrics[0].labels == {"a:b": "1", "x": "2"} and family.metrics[0].value == 3.0
