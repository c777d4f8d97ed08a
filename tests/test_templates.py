"""Templates of repeated pushes (pushgw/storage/templates.py).

Whatever a template gives must be exactly what full preparation gives: the
property test pushes random bodies of one shape with random values (odd and
invalid ones included) and compares every result with full preparation.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushgw.handler.body import BodyError, parse_families
from pushgw.storage.family import PreparedPush, prepare_push
from pushgw.storage.limits import Limits
from pushgw.storage.templates import PushTemplates

GROUPING = {"job": "j", "zone": "z1"}


def full(body: bytes, pushed_at: float = 1.0) -> PreparedPush:
    return prepare_push(parse_families(body, "text/plain"), GROUPING, pushed_at, False, Limits())


class Counting:
    """Full preparation that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, body: bytes) -> PreparedPush:
        self.calls += 1
        return full(body)


def outcome(prepare, body: bytes):
    """A prepared push, or the error it raised (as type and message)."""
    try:
        return prepare(body)
    except BodyError as err:
        return type(err), str(err)


def body(values: list[str], help_text: str = "Requests.", kind: str = "counter") -> bytes:
    """Counters, a histogram and a summary, with the given value tokens (18 of them)."""
    v = iter(values)
    lines = [
        f"# HELP req_total {help_text}",
        f"# TYPE req_total {kind}",
        f'req_total{{path="/b",code="200"}} {next(v)}',
        f'req_total{{path="/a",code="500"}} {next(v)}',
        f"req_total {next(v)}",
        "",
        "# TYPE lat histogram",
        f'lat_bucket{{path="/a",le="0.1"}} {next(v)}',
        f'lat_bucket{{path="/a",le="1"}} {next(v)}',
        f'lat_sum{{path="/a"}} {next(v)}',
        f'lat_count{{path="/a"}} {next(v)}',
        f'lat_bucket{{path="/b",le="+Inf"}} {next(v)}',
        f'lat_sum{{path="/b"}} {next(v)}',
        f'lat_count{{path="/b"}} {next(v)}',
        "# TYPE rpc summary",
        f'rpc{{quantile="0.5"}} {next(v)}',
        f'rpc{{quantile="NaN"}} {next(v)}',
        f"rpc_sum {next(v)}",
        f"rpc_count {next(v)}",
        "# a comment",
        f"temperature {next(v)}",
        f'temperature{{room="hall"}}   {next(v)}',
        f'temperature{{room="a b"}} {next(v)}',
    ]
    return ("\n".join(lines) + "\n").encode()


WHOLE = [str(i) for i in range(1, 19)]
NOWHERE = 11  # the quantile="NaN" line: Go drops its value


def test_built_on_the_second_body_of_a_shape_and_used_from_the_third():
    templates = PushTemplates()
    prepare = Counting()
    for i in range(5):
        values = [str(int(v) * 10 + i) for v in WHOLE]
        values[NOWHERE] = "1"
        got = templates.prepare("k", body(values), 1.0, prepare)
        assert got == full(body(values))
    # 1st: full; 2nd: full, then the probe and the check; 3rd to 5th: none
    assert prepare.calls == 3


def test_values_are_formatted_as_the_renderer_does():
    templates = PushTemplates()
    for values in (WHOLE, WHOLE, ["1.50", "-0", "+Inf", "1e3", "1e3", "-.5", *WHOLE[6:]]):
        got = templates.prepare("k", body(values), 1.0, full)
    lines = got.families["req_total"].lines.decode()
    assert 'req_total{code="200",instance="",job="j",path="/b",zone="z1"} 1.5\n' in lines
    assert 'req_total{code="500",instance="",job="j",path="/a",zone="z1"} 0\n' in lines
    assert 'req_total{instance="",job="j",zone="z1"} +Inf\n' in lines
    assert got == full(body(["1.50", "-0", "+Inf", "1e3", "1e3", "-.5", *WHOLE[6:]]))


def test_a_float_histogram_count_is_written_as_it_came():
    templates = PushTemplates()
    prepare = Counting()
    values = list(WHOLE)
    values[6] = "2.5"
    for v in (WHOLE, WHOLE, values):
        got = templates.prepare("k", body(v), 1.0, prepare)
    assert prepare.calls == 3
    assert b'lat_count{instance="",job="j",path="/a",zone="z1"} 2.5\n' in got.families["lat"].lines
    assert got == full(body(values))


@pytest.mark.parametrize(
    ("position", "token"),
    [
        (0, "1e999"),  # overflow: a parse error
        (0, "0x10"),  # not a Go float in the text format
        (3, "-1"),  # a negative bucket count: a parse error
        (6, "-2"),  # a negative histogram count: a parse error
        (3, "NaN"),  # NaN as a bucket count becomes 2**63
        (13, "1.5"),  # a summary count is truncated to 1
        (13, "-1"),  # ... and wraps around below 0
        (0, "1 123"),  # a timestamp: another shape
        (0, ""),  # no value
    ],
)
def test_values_preparation_treats_differently_are_prepared_in_full(position, token):
    templates = PushTemplates()
    prepare = Counting()
    templates.prepare("k", body(WHOLE), 1.0, prepare)
    templates.prepare("k", body(WHOLE), 1.0, prepare)
    calls = prepare.calls
    values = list(WHOLE)
    values[position] = token
    assert outcome(lambda b: templates.prepare("k", b, 1.0, prepare), body(values)) == outcome(
        full, body(values)
    )
    assert prepare.calls == calls + 1


def test_a_value_that_lands_nowhere_must_not_change():
    # Go keeps the second of two counts; the first is still parsed, and refused when negative.
    def twice(first: str, second: str) -> bytes:
        return body(WHOLE).replace(b"lat_count{path=\"/a\"} 7\n", f'lat_count{{path="/a"}} {first}\nlat_count{{path="/a"}} {second}\n'.encode())

    templates = PushTemplates()
    prepare = Counting()
    for _ in range(2):
        templates.prepare("k", twice("1", "2"), 1.0, prepare)
    templates.prepare("k", twice("1", "5"), 1.0, prepare)
    assert prepare.calls == 3
    for first in ("-1", "3", "NaN"):
        assert outcome(lambda b: templates.prepare("k", b, 1.0, prepare), twice(first, "5")) == outcome(
            full, twice(first, "5")
        )
    assert outcome(full, twice("-1", "5"))[1].endswith('negative count for histogram "lat"')
    assert prepare.calls == 6
    values = list(WHOLE)
    values[NOWHERE] = "12.5"
    assert templates.prepare("k", body(values), 1.0, prepare) == full(body(values))
    assert prepare.calls == 7


def test_comment_and_help_text_are_part_of_the_shape():
    templates = PushTemplates()
    for _ in range(2):
        templates.prepare("k", body(WHOLE), 1.0, full)
    for other in (body(WHOLE, help_text="Other text."), body(WHOLE, kind="gauge")):
        got = templates.prepare("k", other, 1.0, full)
        assert got == full(other)
    assert full(body(WHOLE, kind="gauge")).families["req_total"].type == "gauge"


def test_keys_do_not_share_templates():
    templates = PushTemplates()
    prepare = Counting()
    for _ in range(2):
        templates.prepare("a", body(WHOLE), 1.0, prepare)
    templates.prepare("b", body(WHOLE), 1.0, prepare)
    assert prepare.calls == 4


def test_a_family_the_store_annotated_does_not_leak_into_the_next_push():
    templates = PushTemplates()
    for _ in range(2):
        templates.prepare("k", body(WHOLE), 1.0, full)
    first = templates.prepare("k", body(WHOLE), 1.0, full)
    first.families["req_total"].gz = b"cached gzip of the old lines"
    first.families["req_total"].hashes.append(7)
    second = templates.prepare("k", body(WHOLE[::-1]), 1.0, full)
    assert second.families["req_total"].gz is None
    assert len(second.families["req_total"].hashes) == 0


def test_bounded_by_lines_least_recently_used_first():
    lines = body(WHOLE).count(b"\n") + 1
    templates = PushTemplates(max_lines=2 * lines)
    prepare = Counting()
    for key in ("a", "b", "a", "b"):
        templates.prepare(key, body(WHOLE), 1.0, prepare)
    templates.prepare("a", body(WHOLE), 1.0, prepare)  # a is now the most recently used
    for _ in range(2):
        templates.prepare("c", body(WHOLE), 1.0, prepare)  # evicts b
    calls = prepare.calls
    templates.prepare("a", body(WHOLE), 1.0, prepare)
    assert prepare.calls == calls
    templates.prepare("b", body(WHOLE), 1.0, prepare)
    assert prepare.calls == calls + 2  # in full, and a new template (b was seen before)


def test_a_body_with_more_lines_than_the_bound_gets_no_template():
    templates = PushTemplates(max_lines=body(WHOLE).count(b"\n"))
    prepare = Counting()
    for _ in range(4):
        templates.prepare("k", body(WHOLE), 1.0, prepare)
    assert prepare.calls == 4


def test_bodies_that_are_not_utf8_are_prepared_in_full():
    templates = PushTemplates()
    bad = body(WHOLE).replace(b"hall", b"h\xffll")
    for _ in range(3):
        assert outcome(lambda b: templates.prepare("k", b, 1.0, full), bad) == outcome(full, bad)


# Value tokens: whole and fractional, signed, special, and ones Go rejects.
TOKENS = st.one_of(
    st.integers(-5, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["+Inf", "-Inf", "inf", "NaN", "nan", "-0", "+5", "1.", ".5", "1e999", "1_0", "0x1", "", "1 2"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(TOKENS, min_size=18, max_size=18), min_size=3, max_size=6))
def test_any_values_give_what_full_preparation_gives(pushes):
    templates = PushTemplates()
    for values in pushes:
        assert outcome(lambda b: templates.prepare("k", b, 1.0, full), body(values)) == outcome(
            full, body(values)
        )


COUNTS = (3, 4, 6, 7, 9, 13)  # histogram bucket and count values, the summary count
VALID = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["+Inf", "-Inf", "NaN", "-0", "+5", "1.", ".5", "1E3"]),
)
WHOLE_COUNT = st.one_of(st.integers(0, 2**53).map(str), st.sampled_from(["0", "1e3", "7.0"]))


@st.composite
def valid_values(draw):
    return [WHOLE[i] if i == NOWHERE else draw(WHOLE_COUNT if i in COUNTS else VALID) for i in range(18)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_values(), min_size=3, max_size=5))
def test_valid_values_come_from_the_template_and_give_the_same(pushes):
    templates = PushTemplates()
    prepare = Counting()
    for values in pushes:
        assert templates.prepare("k", body(values), 1.0, prepare) == full(body(values))
    assert prepare.calls == 3  # every push after the second used the template


def test_no_template_lines_means_no_templates():
    from pushgw.handler import workers

    big = ("# TYPE big gauge\n" + "".join(f'big{{i="{i}"}} {i}\n' for i in range(2000))).encode()
    try:
        workers.keep_templates(0)
        for _ in range(3):
            workers.prepare_body(big, "", "text/plain", {"job": "j"}, 1.0, False, Limits(), 1 << 30)
        assert not workers._TEMPLATES._templates
        workers.keep_templates(100_000)
        for _ in range(2):
            workers.prepare_body(big, "", "text/plain", {"job": "j"}, 1.0, False, Limits(), 1 << 30)
        assert len(workers._TEMPLATES._templates) == 1
    finally:
        workers.keep_templates(100_000)


# Lines with Go's odd cases (braces lines that reuse the metric before, a count
# given twice, suffix names before their TYPE, ...); {v} is the value.
SOUP = st.sampled_from(
    [
        "# TYPE s summary", "# TYPE h histogram", "# TYPE a gauge", "# HELP a doc", "# TYPE g gauge_histogram",
        'a{{l="1"}} {v}', 'a{{l="2",m="2"}} {v}', "a {v}", "a_count {v}", 'a{{l="x\\"y"}} {v}', 'a {{ l = "3" }} {v}',
        's{{quantile="0.5"}} {v}', 's{{l="1",quantile="0.9"}} {v}', "s_count {v}", 's_sum{{l="1"}} {v}',
        's{{quantile="NaN"}} {v}', 'h_bucket{{le="1"}} {v}', 'h_bucket{{l="1",le="+Inf"}} {v}', "h_count {v}",
        'h_sum{{l="1"}} {v}', '{{l="4"}} {v}', "{{}} {v}", '{{"a"}} {v}', '{{"h",le="2"}} {v}', "a {v} 1000",
        "", "  ", "new_name {v}", "new_name_count {v}", 'g_bucket{{le="1"}} {v}', "g_count {v}", "x\t{v}",
    ]
)


# The lines whose values have rules of their own, drawn as often as all the others.
COUNT_LINES = st.sampled_from(
    ['h_bucket{{le="1"}} {v}', "h_count {v}", "h_sum {v}", "s_count {v}", 's{{quantile="0.5"}} {v}', "s_sum {v}"]
)
# Mostly values a template takes, some it must leave to full preparation.
SOUP_TOKENS = st.one_of(
    VALID, WHOLE_COUNT, st.integers(-3, 3).map(str), st.sampled_from(["-1.5", "2.5", "1e999", "0x1", ""])
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(SOUP, COUNT_LINES), min_size=1, max_size=20),
    st.lists(st.lists(SOUP_TOKENS, min_size=20, max_size=20), min_size=3, max_size=6),
)
def test_odd_bodies_give_what_full_preparation_gives(lines, pushes):
    templates = PushTemplates()
    lines = ["# TYPE s summary", "# TYPE h histogram", *lines]
    for values in pushes:
        text = "\n".join(line.format(v=value) for line, value in zip(lines, ["", "", *values])) + "\n"
        assert outcome(lambda b: templates.prepare("k", b, 1.0, full), text.encode()) == outcome(full, text.encode())
