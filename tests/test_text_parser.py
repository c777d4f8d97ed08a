"""Tests for the text format parser: it must match Go's expfmt.TextParser
(legacy name validation) in what it accepts, what it builds and what it says.

Every body is parsed twice, through the regex fast paths and through the
state machine alone; both must agree (see ``parse`` and ``error_of``).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushgw.exposition.text_parser import ParseError, _parse, parse_text
from pushgw.model import COUNTER, GAUGE, HISTOGRAM, SUMMARY, UNTYPED, Metric, MetricFamily

NAN = float("nan")
INF = float("inf")


# ------------------------------------------------------------------ helpers


def _num(v):
    """Comparable form of a number: NaN equals NaN, int and float differ."""
    if isinstance(v, float):
        return ("f", "nan" if v != v else repr(v))
    return ("i", v)


def canon(families: dict[str, MetricFamily]):
    """A structure that compares equal exactly when two results are equal."""
    out = {}
    for name, mf in families.items():
        assert name == mf.name
        out[name] = (
            mf.type,
            mf.help,
            [
                (
                    tuple(m.labels.items()),
                    _num(m.value),
                    _num(m.count),
                    _num(m.sum),
                    [(_num(q), _num(v)) for q, v in m.quantiles],
                    [(_num(b), _num(c)) for b, c in m.buckets],
                    m.timestamp_ms,
                )
                for m in mf.metrics
            ],
        )
    return out


def parse(body: bytes) -> dict[str, MetricFamily]:
    """parse_text, after checking the state machine agrees with it."""
    fast = parse_text(body)
    slow = _parse(body, False)
    assert canon(fast) == canon(slow)
    return fast


def error_of(body: bytes) -> str:
    """The ParseError message, after checking both paths give the same one."""
    with pytest.raises(ParseError) as fast:
        parse_text(body)
    with pytest.raises(ParseError) as slow:
        _parse(body, False)
    assert str(fast.value) == str(slow.value)
    return str(fast.value)


def m(labels=None, value=0.0, count=0, sum=0.0, quantiles=(), buckets=(), ts=None):
    return Metric(dict(labels or {}), value, count, sum, list(quantiles), list(buckets), ts)


def fam(name, type, metrics, help=""):
    return MetricFamily(name, type, help, list(metrics))


def expect(body: bytes, *families: MetricFamily) -> None:
    got = parse(body)
    assert canon(got) == canon({f.name: f for f in families})


# ------------------------------------------------- Go's valid scenarios


def test_empty_lines_only():
    assert parse(b"\n\n") == {}


def test_empty_body():
    assert parse(b"") == {}


def test_minimal_case():
    expect(
        b"""
minimal_metric 1.234
another_metric -3e3 103948
# Even that:
no_labels{} 3
# HELP line for non-existing metric will be ignored.
""",
        fam("minimal_metric", UNTYPED, [m(value=1.234)]),
        fam("another_metric", UNTYPED, [m(value=-3000.0, ts=103948)]),
        fam("no_labels", UNTYPED, [m(value=3.0)]),
    )


def test_counters_gauges_docstrings_whitespace_escapes():
    expect(
        b"""
# A normal comment.
#
# TYPE name counter
name{labelname="val1",basename="basevalue"} NaN
name {labelname="val2",basename="base\\"v\\\\al\\nue"} 0.23 1234567890
# HELP name two-line\\n doc  str\\\\ing

 # HELP  name2  \tdoc str"ing 2
  #    TYPE    name2 gauge
name2{labelname="val2"\t,basename   =   "basevalue2"\t\t} +Inf 54321
name2{ labelname = "val1" , }-Inf
""",
        fam(
            "name",
            COUNTER,
            [
                m({"labelname": "val1", "basename": "basevalue"}, NAN),
                m({"labelname": "val2", "basename": 'base"v\\al\nue'}, 0.23, ts=1234567890),
            ],
            help="two-line\n doc  str\\ing",
        ),
        fam(
            "name2",
            GAUGE,
            [
                m({"labelname": "val2", "basename": "basevalue2"}, INF, ts=54321),
                m({"labelname": "val1"}, -INF),
            ],
            help='doc str"ing 2',
        ),
    )


def test_the_evil_summary():
    expect(
        b"""
# TYPE my_summary summary
my_summary{n1="val1",quantile="0.5"} 110
decoy -1 -2
my_summary{n1="val1",quantile="0.9"} 140 1
my_summary_count{n1="val1"} 42
# Latest timestamp wins in case of a summary.
my_summary_sum{n1="val1"} 4711 2
fake_sum{n1="val1"} 2001
# TYPE another_summary summary
another_summary_count{n2="val2",n1="val1"} 20
my_summary_count{n2="val2",n1="val1"} 5 5
another_summary{n1="val1",n2="val2",quantile=".3"} -1.2
my_summary_sum{n1="val2"} 08 15
my_summary{n1="val3", quantile="0.2"} 4711
  my_summary{n1="val1",n2="val2",quantile="-12.34",} NaN
# some
# funny comments
# HELP
# HELP
# HELP my_summary
# HELP my_summary
""",
        fam(
            "my_summary",
            SUMMARY,
            [
                m({"n1": "val1"}, count=42, sum=4711.0, quantiles=[(0.5, 110.0), (0.9, 140.0)], ts=2),
                m({"n2": "val2", "n1": "val1"}, count=5, quantiles=[(-12.34, NAN)], ts=5),
                m({"n1": "val2"}, sum=8.0, ts=15),
                m({"n1": "val3"}, quantiles=[(0.2, 4711.0)]),
            ],
        ),
        fam("decoy", UNTYPED, [m(value=-1.0, ts=-2)]),
        fam("fake_sum", UNTYPED, [m({"n1": "val1"}, 2001.0)]),
        fam(
            "another_summary",
            SUMMARY,
            [m({"n2": "val2", "n1": "val1"}, count=20, quantiles=[(0.3, -1.2)])],
        ),
    )


HISTOGRAM_BODY = b"""
# HELP request_duration_microseconds The response latency.
# TYPE request_duration_microseconds %s
request_duration_microseconds_bucket{le="100"} 123
request_duration_microseconds_bucket{le="120"} 412
request_duration_microseconds_bucket{le="144"} 592
request_duration_microseconds_bucket{le="172.8"} 1524
request_duration_microseconds_bucket{le="+Inf"} 2693
request_duration_microseconds_sum 1.7560473e+06
request_duration_microseconds_count 2693
"""

HISTOGRAM_FAMILY = fam(
    "request_duration_microseconds",
    HISTOGRAM,
    [
        m(
            count=2693,
            sum=1756047.3,
            buckets=[(100.0, 123), (120.0, 412), (144.0, 592), (172.8, 1524), (INF, 2693)],
        )
    ],
    help="The response latency.",
)


def test_histogram():
    expect(HISTOGRAM_BODY % b"histogram", HISTOGRAM_FAMILY)


@pytest.mark.parametrize("word", [b"gaugehistogram", b"gauge_histogram", b"GAUGE_HISTOGRAM"])
def test_gauge_histogram_is_kept_as_histogram(word):
    # Go keeps GAUGE_HISTOGRAM but parses and renders it exactly like a
    # histogram; the model has no such type.
    expect(HISTOGRAM_BODY % word, HISTOGRAM_FAMILY)


def test_full_float_histogram():
    expect(
        b"""
# TYPE h histogram
h_bucket{le="100"} 123.5
h_bucket{le="+Inf"} 2693.9
h_sum 1.7560473e+06
h_count 2693.9
""",
        fam("h", HISTOGRAM, [m(count=2693.9, sum=1756047.3, buckets=[(100.0, 123.5), (INF, 2693.9)])]),
    )


def test_float_histogram_where_only_the_count_is_a_float():
    # Go then turns every bucket count into a float count as well.
    expect(
        b"""
# TYPE h histogram
h_bucket{le="100"} 123
h_bucket{le="172.8"} 1524
h_sum 1.7560473e+06
h_count 2693.9
""",
        fam("h", HISTOGRAM, [m(count=2693.9, sum=1756047.3, buckets=[(100.0, 123.0), (172.8, 1524.0)])]),
    )


def test_float_histogram_where_one_bucket_is_a_float():
    expect(
        b"""
# TYPE h gauge_histogram
h_bucket{le="100"} 123
h_bucket{le="172.8"} 1524.8
h_bucket{le="+Inf"} 2693
h_sum 1.7560473e+06
h_count 2693
""",
        fam(
            "h",
            HISTOGRAM,
            [m(count=2693.0, sum=1756047.3, buckets=[(100.0, 123.0), (172.8, 1524.8), (INF, 2693.0)])],
        ),
    )


def test_quoted_names_with_legacy_content_are_accepted():
    # Go's quoted-name syntax is parsed even under legacy validation; only
    # the resulting names must be legacy-valid.
    expect(
        b"""
# HELP "my_metric" help text
# TYPE "my_metric" counter
{"my_metric","label_name"="value"} 1
{labelname="value", "my_metric"} 2
{"my_metric"} 3 1234567890
other{"quoted"="v"} 4
""",
        fam(
            "my_metric",
            COUNTER,
            [m({"label_name": "value"}, 1.0), m({"labelname": "value"}, 2.0), m(value=3.0, ts=1234567890)],
            help="help text",
        ),
        fam("other", UNTYPED, [m({"quoted": "v"}, 4.0)]),
    )


def test_multiple_minimal_metrics_with_quoted_names():
    expect(
        b'\n{"name_1"} 1\n{"name_2"} 1\n{"name_3"} 1\n',
        fam("name_1", UNTYPED, [m(value=1.0)]),
        fam("name_2", UNTYPED, [m(value=1.0)]),
        fam("name_3", UNTYPED, [m(value=1.0)]),
    )


def test_non_ascii_label_values():
    expect(
        '{"g",a="Bj\u00f6rn",b="\u4f56\u4f65"} 3.14e+42\n'.encode(),
        fam("g", UNTYPED, [m({"a": "Bj\u00f6rn", "b": "\u4f56\u4f65"}, 3.14e42)]),
    )


# ------------------------------------------------- Go's invalid scenarios

GO_ERRORS = [
    # (body, message prefix); line numbers are part of the prefix.
    (b"\nbla 3.14\nblubber 42", "text format parsing error in line 3: unexpected end of input stream"),
    (b'metric{label="\\t"} 3.14', "text format parsing error in line 1: invalid escape sequence '\\t'"),
    (b'\nmetric{label="new\nline"} 3.14\n', 'text format parsing error in line 2: label value "new" contains unescaped new-line'),
    (b'metric{@="bla"} 3.14', 'text format parsing error in line 1: invalid label name for metric "metric"'),
    (b'metric{__name__="bla"} 3.14', 'text format parsing error in line 1: label name "__name__" is reserved'),
    (b'metric{label+="bla"} 3.14', "text format parsing error in line 1: expected '=' after label name, found '+'"),
    (b"metric{label=bla} 3.14", "text format parsing error in line 1: expected '\"' at start of label value, found 'b'"),
    (b'\n# TYPE metric summary\nmetric{quantile="bla"} 3.14\n', "text format parsing error in line 3: expected float as value for 'quantile' label, got \"bla\""),
    (b'metric{label="bla"+} 3.14', 'text format parsing error in line 1: unexpected end of label value "bla"'),
    (b'metric{label="bla"} 3.14 2.72\n', 'text format parsing error in line 1: expected integer as timestamp, got "2.72"'),
    (b'metric{label="bla"} 3.14 2 3\n', 'text format parsing error in line 1: spurious string after timestamp: " 3"'),
    (b'metric{label="bla"} blubb\n', 'text format parsing error in line 1: expected float as value, got "blubb"'),
    (b"\n# HELP metric one\n# HELP metric two\n", 'text format parsing error in line 3: second HELP line for metric name "metric"'),
    (b"\n# TYPE metric counter\n# TYPE metric untyped\n", 'text format parsing error in line 3: second TYPE line for metric name "metric", or TYPE reported after samples'),
    (b"\nmetric 4.12\n# TYPE metric counter\n", 'text format parsing error in line 3: second TYPE line for metric name "metric", or TYPE reported after samples'),
    (b"\n# TYPE metric bla\n", 'text format parsing error in line 2: unknown metric type "bla"'),
    (b"\n# TYPE met-ric\n", "text format parsing error in line 2: invalid metric name in comment"),
    (b'@invalidmetric{label="bla"} 3.14 2', "text format parsing error in line 1: invalid metric name"),
    (b'{label="bla"} 3.14 2', "text format parsing error in line 1: invalid metric name"),
    (b'\n# TYPE metric histogram\nmetric_bucket{le="bla"} 3.14\n', "text format parsing error in line 3: expected float as value for 'le' label, got \"bla\""),
    (b'metric{l="\xbd"} 3.14\n', 'text format parsing error in line 1: invalid label value "\\xbd"'),
    (b"foo 1_2\n", 'text format parsing error in line 1: expected float as value, got "1_2"'),
    (b"foo 0x1p-3\n", "text format parsing error in line 1: expected float as value"),
    (b"foo 0x1P-3\n", "text format parsing error in line 1: expected float as value"),
    (b"foo 0B1\n", "text format parsing error in line 1: expected float as value"),
    (b"foo 0O1\n", "text format parsing error in line 1: expected float as value"),
    (b"foo 0X1\n", "text format parsing error in line 1: expected float as value"),
    (b"foo 0x1\n", "text format parsing error in line 1: expected float as value"),
    (b"foo 0b1\n", "text format parsing error in line 1: expected float as value"),
    (b"foo 0o1\n", "text format parsing error in line 1: expected float as value"),
    (b'\n# TYPE metric histogram\nmetric_bucket{le="0x1p-3"} 3.14\n', "text format parsing error in line 3: expected float as value for 'le' label"),
    (b'\n# TYPE metric summary\nmetric{quantile="0x1p-3"} 3.14\n', "text format parsing error in line 3: expected float as value for 'quantile' label"),
    (b'metric{label="bla",label="bla"} 3.14', 'text format parsing error in line 1: duplicate label names for metric "metric"'),
    (b'{"one.name","another.name"} 3.14', 'text format parsing error in line 1: invalid metric name "one.name"'),
    (b'{"a\\xc5z",label="bla"} 3.14', "text format parsing error in line 1: invalid escape sequence '\\x'"),
    (b'{"metric.name".label="bla"} 3.14', "text format parsing error in line 1: unexpected end of metric name '.'"),
    (b'\n# TYPE "metric.name\\t" counter\n{"metric.name\\t",label="bla"} 3.14\n', "text format parsing error in line 2: invalid escape sequence '\\t'"),
    (b'\n# TYPE "metric\nname" counter\n{"metric\nname",label="bla"} 3.14\n', 'text format parsing error in line 2: metric name "metric" contains unescaped new-line'),
    (b'\n{"metric.name","new\nline"="bla"} 3.14\n', 'text format parsing error in line 2: invalid metric name "metric.name"'),
    (b'{"metric.name",foo="bla"} 3.14\n', 'text format parsing error in line 1: invalid metric name "metric.name"'),
    (b'metric_name{"foo"="bar", "dotted.label"="bla"} 3.14\n', 'text format parsing error in line 1: invalid label name "dotted.label"'),
    (HISTOGRAM_BODY.replace(b"_count 2693", b"_count -2693") % b"histogram", 'text format parsing error in line 10: negative count for histogram "request_duration_microseconds"'),
    (HISTOGRAM_BODY.replace(b"} 412", b"} -412") % b"histogram", 'text format parsing error in line 5: negative bucket population for histogram "request_duration_microseconds"'),
    (HISTOGRAM_BODY.replace(b"_count 2693", b"_count -2693.123") % b"histogram", 'text format parsing error in line 10: negative count for histogram "request_duration_microseconds"'),
    (HISTOGRAM_BODY.replace(b"} 412", b"} -412.456") % b"histogram", 'text format parsing error in line 5: negative bucket population for histogram "request_duration_microseconds"'),
    (b"{} 3.14", "text format parsing error in line 1: invalid metric name"),
]


@pytest.mark.parametrize("body,message", GO_ERRORS)
def test_go_error_scenarios(body, message):
    assert error_of(body).startswith(message)


# ------------------------------------------------- further points


def test_unterminated_last_line_is_an_error_even_when_valid():
    assert error_of(b"a 1\nb 2") == "text format parsing error in line 2: unexpected end of input stream"
    assert error_of(b"# just a comment") == "text format parsing error in line 1: unexpected end of input stream"


def test_trailing_blanks_without_newline_are_fine():
    expect(b"a 1\n  \t", fam("a", UNTYPED, [m(value=1.0)]))


def test_carriage_return_is_not_whitespace():
    assert error_of(b"a 1\r\n") == 'text format parsing error in line 1: expected float as value, got "1\\r"'
    assert error_of(b"# TYPE a gauge\r\n") == 'text format parsing error in line 1: unknown metric type "gauge\\r"'


def test_trailing_blank_after_value_or_timestamp_is_an_error():
    assert error_of(b"a 1 \n") == 'text format parsing error in line 1: expected integer as timestamp, got ""'
    assert error_of(b"a 1 2 \n") == 'text format parsing error in line 1: spurious string after timestamp: " "'


def test_blanks_and_tabs_where_go_allows_them():
    expect(
        b' \t a \t { x = "1" , y="2" ,} \t 5 \t 7\n',
        fam("a", UNTYPED, [m({"x": "1", "y": "2"}, 5.0, ts=7)]),
    )


def test_value_may_follow_name_or_brace_directly():
    # Go ends the name at the first byte that cannot continue it.
    expect(b"a-1\nb{}2\nc+Inf\n", fam("a", UNTYPED, [m(value=-1.0)]), fam("b", UNTYPED, [m(value=2.0)]), fam("c", UNTYPED, [m(value=INF)]))


def test_quote_inside_a_name_starts_a_quoted_part():
    expect(b'ab"cd" 1\n', fam("abcd", UNTYPED, [m(value=1.0)]))


def test_duplicate_series_are_kept():
    expect(
        b'a{x="1"} 1\na{x="1"} 2\na 3\na 4\n',
        fam("a", UNTYPED, [m({"x": "1"}, 1.0), m({"x": "1"}, 2.0), m(value=3.0), m(value=4.0)]),
    )


def test_type_without_samples_is_dropped():
    expect(b"# TYPE a gauge\n# HELP b doc\nc 1\n", fam("c", UNTYPED, [m(value=1.0)]))


def test_help_and_type_in_either_order_and_help_after_samples():
    expect(
        b"# TYPE a gauge\n# HELP a doc\na 1\nb 2\n# HELP b late doc\n",
        fam("a", GAUGE, [m(value=1.0)], help="doc"),
        fam("b", UNTYPED, [m(value=2.0)], help="late doc"),
    )


def test_type_word_is_case_insensitive_and_drops_backslashes():
    expect(b"# TYPE a GaUgE\na 1\n# TYPE b coun\\ter\nb 1\n", fam("a", GAUGE, [m(value=1.0)]), fam("b", COUNTER, [m(value=1.0)]))


def test_type_word_uses_go_simple_upper_casing():
    # U+017F (long s) upper-cases to S in Go; U+FB05 (ligature st) does not
    # upper-case to "ST" there, unlike Python's str.upper().
    expect("# TYPE a \u017fummary\na_count 1\n".encode(), fam("a", SUMMARY, [m(count=1)]))
    assert "unknown metric type" in error_of("# TYPE a hi\ufb05ogram\n".encode())


def test_type_with_trailing_blank_is_unknown():
    assert error_of(b"# TYPE a gauge \n") == 'text format parsing error in line 1: unknown metric type "gauge "'


def test_help_and_type_without_text_are_ignored():
    # A name followed by the newline: no family is created.
    expect(b"# HELP a\n# TYPE a\na 1\n# TYPE a \n", fam("a", UNTYPED, [m(value=1.0)]))


def test_help_escapes():
    expect(b'# HELP a x\\\\y\\nz\\"q\na 1\n', fam("a", UNTYPED, [m(value=1.0)], help='x\\y\nz"q'))
    assert error_of(b"# HELP a bad \\t escape\n") == "text format parsing error in line 1: invalid escape sequence '\\t'"


def test_help_for_a_summary_count_goes_to_the_summary():
    expect(b"# TYPE s summary\n# HELP s_count doc\ns_count 1\n", fam("s", SUMMARY, [m(count=1)], help="doc"))


def test_second_type_via_suffix_name():
    assert error_of(b"# TYPE s summary\n# TYPE s_sum gauge\n").endswith(
        'second TYPE line for metric name "s", or TYPE reported after samples'
    )


def test_other_comments_are_ignored():
    expect(b"#\n# \n#HELP\n# foo bar baz\n#TYPEx y z\na 1\n", fam("a", UNTYPED, [m(value=1.0)]))


def test_invalid_names():
    assert error_of(b"1abc 1\n") == "text format parsing error in line 1: invalid metric name"
    assert error_of(b'"" 1\n') == "text format parsing error in line 1: invalid metric name"
    assert error_of(b'"a.b" 1\n') == 'text format parsing error in line 1: invalid metric name "a.b"'
    assert error_of(b'a{"b.c"="1"} 1\n') == 'text format parsing error in line 1: invalid label name "b.c"'
    assert error_of(b"a{b:c=\"1\"} 1\n") == "text format parsing error in line 1: expected '=' after label name, found ':'"
    assert error_of("a{\u00e9=\"1\"} 1\n".encode()) == 'text format parsing error in line 1: invalid label name for metric "a"'
    assert error_of("a{b\u00e9=\"1\"} 1\n".encode()) == "text format parsing error in line 1: expected '=' after label name, found '\u00c3'"


def test_label_value_escapes():
    expect(b'a{x="\\\\\\"\\n"} 1\n', fam("a", UNTYPED, [m({"x": '\\"\n'}, 1.0)]))
    assert error_of(b'a{x="\\u00e9"} 1\n') == "text format parsing error in line 1: invalid escape sequence '\\u'"


def test_invalid_utf8_in_label_value_is_rejected_anywhere_in_the_body():
    assert error_of(b'a 1\nb{x="ok"} 1\nc{x="\xff\xfe"} 1\n') == 'text format parsing error in line 3: invalid label value "\\xff\\xfe"'
    # Overlong encodings and encoded surrogates are invalid too.
    assert "invalid label value" in error_of(b'c{x="\xc0\xaf"} 1\n')
    assert "invalid label value" in error_of(b'c{x="\xed\xa0\x80"} 1\n')


def test_invalid_utf8_in_help_is_accepted_and_replaced():
    got = parse(b"# HELP a bad \xff byte\na 1\n")
    assert got["a"].help == "bad \ufffd byte"


def test_invalid_utf8_elsewhere_gives_go_quoting():
    assert error_of(b"a \xff\n") == 'text format parsing error in line 1: expected float as value, got "\\xff"'
    assert error_of(b"a{x=\xff} 1\n") == "text format parsing error in line 1: expected '\"' at start of label value, found '\u00ff'"


def test_error_quoting_of_control_bytes():
    assert error_of(b"a{x=\x01} 1\n") == "text format parsing error in line 1: expected '\"' at start of label value, found '\\x01'"
    assert error_of(b"a{x\n") == "text format parsing error in line 1: expected '=' after label name, found '\\n'"
    assert error_of(b"a \x7f\n") == 'text format parsing error in line 1: expected float as value, got "\\x7f"'


GO_FLOATS_ACCEPTED = [
    (b"1", 1.0), (b"-1.5", -1.5), (b"+2", 2.0), (b".5", 0.5), (b"5.", 5.0), (b"1.e3", 1000.0),
    (b"1E+3", 1000.0), (b"08", 8.0), (b"-0", -0.0), (b"NaN", NAN), (b"nan", NAN), (b"NAN", NAN),
    (b"Inf", INF), (b"+inf", INF), (b"-Inf", -INF), (b"infinity", INF), (b"-INFINITY", -INF),
    (b"1e-400", 0.0), (b"4.9e-324", 5e-324), (b"1.7976931348623157e308", 1.7976931348623157e308),
    (b"0" * 400 + b"1", 1.0),
]


@pytest.mark.parametrize("text,value", GO_FLOATS_ACCEPTED)
def test_go_float_syntax_accepted(text, value):
    got = parse(b"a " + text + b"\n")["a"].metrics[0].value
    assert _num(got) == _num(value)


GO_FLOATS_REJECTED = [
    b"1_000", b"0x10", b"0x1p4", b"1e", b"1e+", b"e5", b".", b"-", b"+nan", b"-nan", b"nan1", b"infin",
    b"infinit", b"inf1", b"1e400", b"-1e309", b"1.7976931348623159e308", b"1,5", b"\xd9\xa1",
    b"1\x0c", b"\x0b1", b"1f", b"true",
]


@pytest.mark.parametrize("text", GO_FLOATS_REJECTED)
def test_go_float_syntax_rejected(text):
    assert "expected float as value" in error_of(b"a " + text + b"\n")


def test_timestamps():
    got = parse(b"a 1 -9223372036854775808\nb 1 9223372036854775807\nc 1 +5\n")
    assert got["a"].metrics[0].timestamp_ms == -(2**63)
    assert got["b"].metrics[0].timestamp_ms == 2**63 - 1
    assert got["c"].metrics[0].timestamp_ms == 5
    for bad in (b"9223372036854775808", b"1_000", b"1e3", b"0x10", b"1.0", b"\xd9\xa1"):
        assert "expected integer as timestamp" in error_of(b"a 1 " + bad + b"\n")


@pytest.mark.parametrize(
    "text,count",
    [
        (b"1.5", 1),
        (b"42", 42),
        (b"-1", 2**64 - 1),  # Go's uint64(float64) on amd64 wraps
        (b"-1.9", 2**64 - 1),
        (b"NaN", 2**63),
        (b"+Inf", 2**63),
        (b"-Inf", 2**63),
        (b"1e30", 2**63),
        (b"1.8e19", 18000000000000000000),
    ],
)
def test_summary_count_converted_like_go(text, count):
    got = parse(b"# TYPE s summary\ns_count " + text + b"\n")
    assert _num(got["s"].metrics[0].count) == _num(count)


@pytest.mark.parametrize(
    "text,count",
    [(b"42", 42), (b"-0", 0), (b"1.5", 1.5), (b"NaN", NAN), (b"+Inf", INF), (b"1e30", 1e30)],
)
def test_histogram_count_int_or_float_like_go(text, count):
    got = parse(b"# TYPE h histogram\nh_count " + text + b"\n")
    assert _num(got["h"].metrics[0].count) == _num(count)


def test_histogram_grouping_by_labels_without_le():
    expect(
        b"""# TYPE h histogram
h_bucket{a="1",le="1"} 1
h_bucket{a="2",le="1"} 2
h_bucket{le="+Inf",a="1"} 3
h_count{a="1"} 3
h_sum{a="2"} 7
h{le="5",a="1"} 4
""",
        fam(
            "h",
            HISTOGRAM,
            [
                m({"a": "1"}, count=3, buckets=[(1.0, 1), (INF, 3), (5.0, 4)]),
                m({"a": "2"}, sum=7.0, buckets=[(1.0, 2)]),
            ],
        ),
    )


def test_quantile_and_le_are_plain_labels_elsewhere():
    expect(
        b'a{quantile="x",le="y"} 1\n# TYPE s summary\ns{le="1",quantile="0.5"} 2\n',
        fam("a", UNTYPED, [m({"quantile": "x", "le": "y"}, 1.0)]),
        fam("s", SUMMARY, [m({"le": "1"}, quantiles=[(0.5, 2.0)])]),
    )


def test_repeated_quantile_label_is_not_a_duplicate():
    expect(b'# TYPE s summary\ns{quantile="0.5",quantile="0.9"} 1\n', fam("s", SUMMARY, [m(quantiles=[(0.9, 1.0)])]))


def test_summary_line_without_quantile_creates_an_empty_summary():
    expect(b'# TYPE s summary\ns{a="1"} 5\n', fam("s", SUMMARY, [m({"a": "1"})]))


def test_suffix_names_before_type_are_their_own_families():
    expect(
        b"x_count 1\n# TYPE x summary\nx_count 2\nx_sum 3\n",
        fam("x_count", UNTYPED, [m(value=1.0), m(value=2.0)]),
        fam("x", SUMMARY, [m(sum=3.0)]),
    )


def test_bucket_suffix_of_a_summary_is_its_own_family():
    expect(b"# TYPE x summary\nx_bucket 1\n", fam("x_bucket", UNTYPED, [m(value=1.0)]))


def test_braces_line_without_name_reuses_the_previous_metric():
    # Go attaches such a line to the family and metric of the line before
    # (its parser state is not reset); the metric ends up in the family twice.
    got = parse(b'a{x="1"} 1\n{y="2"} 3\n')
    metrics = got["a"].metrics
    assert len(metrics) == 2 and metrics[0] is metrics[1]
    assert metrics[0].labels == {"x": "1", "y": "2"} and metrics[0].value == 3.0


def test_braces_line_after_a_comment_only_family_reads_as_counter():
    # Go's GetType() of an unset type is COUNTER.
    got = parse(b"a 1\n# HELP b doc\n{} 2\n")
    assert got["b"].type == COUNTER and got["b"].metrics[0] is got["a"].metrics[0]


def test_braces_line_where_go_would_crash_is_an_error():
    # Go dereferences a nil metric / writes a nil map and panics; we answer 400.
    assert error_of(b"# TYPE a gauge\n{} 1\n") == "text format parsing error in line 2: invalid metric name"
    assert error_of(b'# TYPE s summary\n# TYPE g gauge\n{"s",a="b"} 1\n') == "text format parsing error in line 3: invalid metric name"


def test_multiple_metric_names_in_braces():
    assert error_of(b'{"a", "b"} 1\n') == 'text format parsing error in line 1: multiple metric names for metric "a"'


def test_line_numbers_count_blank_and_comment_lines():
    assert error_of(b"\n\n# c\n\na 1\n  \nb x\n").startswith("text format parsing error in line 7:")


def test_parse_error_is_a_value_error_with_parts():
    with pytest.raises(ValueError) as e:
        parse_text(b"a x\n")
    assert e.value.line == 1 and e.value.msg == 'expected float as value, got "x"'


def test_garbage_collector_state_is_restored():
    import gc

    assert gc.isenabled()
    parse_text(b"a 1\n")
    assert gc.isenabled()
    with pytest.raises(ParseError):
        parse_text(b"a x\n")
    assert gc.isenabled()
    gc.disable()
    try:
        parse_text(b"a 1\n")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_accepts_bytearray_and_memoryview():
    assert canon(parse_text(bytearray(b"a 1\n"))) == canon(parse_text(memoryview(b"a 1\n")))


# ------------------------------------------------- fast path == state machine

_FRAGMENTS = [
    "a", "a_count", "a_sum", "a_bucket", "s", "s_count", "s_sum", "h", "h_bucket", "h_count", "h_sum",
    "x:y", "_", '"a"', '"s"', '"h"', "{", "}", ",", "=", " ", "\t", "  ", '"', "\\", "\\n", '\\"', "\\\\",
    'l="v"', 'l="w"', 'm="v"', 'quantile="0.5"', 'quantile="x"', 'le="1"', 'le="+Inf"', "__name__",
    "1", "-1", "2.5", "NaN", "+Inf", "-Inf", "1e400", "1_0", "123", "-5", "#", "# HELP ", "# TYPE ",
    "summary", "histogram", "gauge", "counter", "untyped", "gaugehistogram", "bogus", "doc",
    "\n", "\n", "\n", "\r", "\xe9", "\udcff", "\u00a0",
]


def _body(parts: list[str]) -> bytes:
    return "".join(parts).encode("utf-8", "surrogateescape")


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=40))
def test_fast_paths_agree_with_state_machine_on_fragment_soup(parts):
    body = _body(parts)
    try:
        fast = canon(parse_text(body))
    except ParseError as e:
        fast = str(e)
    try:
        slow = canon(_parse(body, False))
    except ParseError as e:
        slow = str(e)
    assert fast == slow


_LINES = st.sampled_from(
    [
        "# TYPE s summary", "# TYPE h histogram", "# TYPE a gauge", "# TYPE a_count counter",
        "# HELP a doc", "# HELP s doc \\\\ x", "# HELP h", "# TYPE g gauge_histogram",
        'a{l="1"} 1', 'a{l="1",m="2"} 2 3', "a 1", "a_count 5", 'a{l="x\\"y"} 1', 'a { l = "1" } 1',
        's{quantile="0.5"} 1', 's{l="1",quantile="0.9"} 2', "s_count 3", 's_sum{l="1"} 4', "s_count -1",
        'h_bucket{le="1"} 1', 'h_bucket{l="1",le="+Inf"} 2.5', "h_count 3", 'h_sum{l="1"} 4', "h_count -1",
        '{l="1"} 5', "{} 6", '{"a"} 7', '{l="2","s"} 8', '{"h",le="2"} 9', "a 1 1000", 'a{l="1",l="2"} 1',
        "", "  ", "#", "a x", "a 1e400", 'a{__name__="x"} 1', 'a{l="1"} 1 99999999999999999999',
        "new_name 1", "new_name_count 2", "s_count 1.5", 'h_bucket{le="1"} -2', 'h_bucket{le="x"} 1',
        '{"s",quantile="0.1"} 1', 's{quantile="1e400"} 1', 'h{le="2",le="3"} 1', 'a{l="\\n"} 1',
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_LINES, max_size=25), st.booleans())
def test_fast_paths_agree_with_state_machine_on_line_soup(lines, final_newline):
    body = "\n".join(lines).encode() + (b"\n" if final_newline and lines else b"")
    try:
        fast = canon(parse_text(body))
    except ParseError as e:
        fast = str(e)
    try:
        slow = canon(_parse(body, False))
    except ParseError as e:
        slow = str(e)
    assert fast == slow


def test_large_body_parses_completely():
    lines = [f'm_{i % 7}{{instance="host-{i}",job="j"}} {i}.5' for i in range(5000)]
    got = parse(("\n".join(lines) + "\n").encode())
    assert sum(len(f.metrics) for f in got.values()) == 5000
    assert got["m_3"].metrics[1].labels == {"instance": "host-10", "job": "j"}
    assert math.isclose(got["m_3"].metrics[1].value, 10.5)
