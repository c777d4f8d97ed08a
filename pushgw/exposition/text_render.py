"""Renderer for the Prometheus text exposition format 0.0.4.

The output is byte-for-byte what Go's ``expfmt.MetricFamilyToText`` writes
for the same family (the official Pushgateway's /metrics text output), given
labels in the order the caller wants them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

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

__all__ = [
    "escape_label_values",
    "format_sample",
    "format_value",
    "label_pairs_format",
    "render_header",
    "render_metrics",
    "render_family",
    "series_text",
]

_INF = float("inf")
_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PLAIN = (COUNTER, GAUGE, UNTYPED)

# Rendered names, quoted when not legacy-valid (Go's writeName). Names repeat
# for every series, so this is worth caching; the cap keeps it bounded.
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_MAX = 100_000


def format_value(v: float) -> str:
    """Go's strconv.FormatFloat(v, 'g', -1, 64), with +Inf for infinity.

    Shortest round-trip digits (Python's repr finds the same digits as Go),
    laid out as Go does: exponent form when the decimal exponent is below -4
    or at least 6 (Go fixes the precision at 6 for this decision in the
    shortest mode), with a sign and at least two exponent digits. Negative
    zero is "-0" here; the text renderer writes it as "0" (see format_sample).
    """
    if -1e6 < v < 1e6:  # whole numbers are the common case: no repr needed
        i = int(v)
        if i == v and i:
            return str(i)
    if v != v:
        return "NaN"
    if v == _INF:
        return "+Inf"
    if v == -_INF:
        return "-Inf"
    r = repr(v)
    if "e" not in r:
        if -1e6 < v < 1e6:
            # Python and Go agree on fixed notation for exponents -4..5.
            return r[:-2] if r.endswith(".0") else r
        neg = r[0] == "-"
        if neg:
            r = r[1:]
        ip, _, fp = r.partition(".")
        digits = (ip + fp).rstrip("0")
        exp = len(ip) - 1
    else:
        mant, _, e = r.partition("e")
        neg = mant[0] == "-"
        if neg:
            mant = mant[1:]
        digits = mant.replace(".", "")
        exp = int(e)
    if exp < 0:
        tail = "e-%02d" % -exp
    else:
        tail = "e+%02d" % exp
    if len(digits) > 1:
        s = digits[0] + "." + digits[1:] + tail
    else:
        s = digits + tail
    return "-" + s if neg else s


def format_sample(v: float) -> str:
    """A sample value as expfmt's writeFloat writes it: format_value, but any zero is "0"."""
    if v == 0:
        return "0"
    if v == 1:
        return "1"
    return format_value(v)


def _escape_label_value(v: str) -> str:
    """Escape backslash, newline and double quote (Go's quotedEscaper)."""
    v = _escape_help(v)
    return v.replace('"', '\\"') if '"' in v else v


def _escape_help(v: str) -> str:
    """Escape backslash and newline (Go's escaper); quotes stay as they are."""
    if "\\" in v:
        v = v.replace("\\", "\\\\")
    if "\n" in v:
        v = v.replace("\n", "\\n")
    return v


def quote_name(name: str) -> str:
    """A metric or label name, quoted when it is not legacy-valid."""
    r = _NAME_CACHE.get(name)
    if r is None:
        if _LEGACY_NAME.fullmatch(name) is not None:
            r = name
        else:
            r = '"' + _escape_label_value(name) + '"'
        if len(_NAME_CACHE) >= _NAME_CACHE_MAX:
            _NAME_CACHE.clear()
        _NAME_CACHE[name] = r
    return r


def _encode(s: str) -> bytes:
    """UTF-8; stray surrogates (raw bytes from a decoder) never raise."""
    try:
        return s.encode()
    except UnicodeEncodeError:
        try:
            return s.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return s.encode("utf-8", "replace")


# Label names known to be legacy-valid metric names, i.e. written unquoted.
_PLAIN_LABEL_NAMES: set[str] = set()


def _label_pairs_slow(labels: dict[str, str]) -> str:
    """'a="x",b="y"' with escaping and name quoting; learns plain names."""
    out = []
    for k, v in labels.items():
        n = quote_name(k)
        if n == k and len(_PLAIN_LABEL_NAMES) < _NAME_CACHE_MAX:
            _PLAIN_LABEL_NAMES.add(k)
        out.append(n + '="' + _escape_label_value(v) + '"')
    return ",".join(out)


def label_pairs_format(names: Iterable[str]) -> str:
    """'a="%s",b="%s"' for these label names, to %-format with escaped values.

    For many series with the same label names: the names are quoted once.
    """
    return ",".join(quote_name(n).replace("%", "%%") + '="%s"' for n in names)


def escape_label_values(values: tuple[str, ...]) -> tuple[str, ...]:
    """The values escaped as Go writes them; the same tuple when none needs it."""
    joined = "".join(values)
    if "\\" in joined or '"' in joined or "\n" in joined:
        return tuple(map(_escape_label_value, values))
    return values


def _label_pairs(labels: dict[str, str]) -> str:
    """'a="x",b="y"' in the dict's order, escaped as Go does.

    One check over all values decides whether any escaping is needed at
    all, which is the rare case.
    """
    vals = "".join(labels.values())
    if (
        "\\" in vals
        or '"' in vals
        or "\n" in vals
        or not labels.keys() <= _PLAIN_LABEL_NAMES
    ):
        return _label_pairs_slow(labels)
    return ",".join([f'{k}="{v}"' for k, v in labels.items()])


def series_text(name: str, pairs: str, extra: str = "") -> str:
    """Name plus label set as Go writes it; ``extra`` is 'le="1"' or similar."""
    n = quote_name(name)
    if n == name:
        if pairs:
            if extra:
                return name + "{" + pairs + "," + extra + "}"
            return name + "{" + pairs + "}"
        if extra:
            return name + "{" + extra + "}"
        return name
    # Not a legacy name: it goes first inside the braces, quoted.
    inner = n
    if pairs:
        inner += "," + pairs
    if extra:
        inner += "," + extra
    return "{" + inner + "}"


def _ts(m: Metric) -> str:
    return "" if m.timestamp_ms is None else " " + str(m.timestamp_ms)


def render_header(name: str, type: str, help: str) -> bytes:  # noqa: A002 (agreed signature)
    """'# HELP' (only when help is non-empty) and '# TYPE' lines.

    The text format has no gauge histograms: they are written as histograms, as Go does.
    """
    n = quote_name(name)
    if type == GAUGE_HISTOGRAM:
        type = HISTOGRAM  # noqa: A001
    if help:
        return _encode(f"# HELP {n} {_escape_help(help)}\n# TYPE {n} {type}\n")
    return _encode(f"# TYPE {n} {type}\n")


def _render_plain(family: MetricFamily, pairs: Iterable[str]) -> list[str]:
    name = family.name
    out = []
    append = out.append
    legacy = quote_name(name) == name
    ffloat = format_value
    for m, p in zip(family.metrics, pairs):
        v = m.value
        # format_sample, inlined for speed.
        vs = "0" if v == 0 else "1" if v == 1 else ffloat(v)
        if not legacy:
            line = series_text(name, p) + " " + vs
        elif p:
            line = f"{name}{{{p}}} {vs}"
        else:
            line = f"{name} {vs}"
        if m.timestamp_ms is not None:
            line += " " + str(m.timestamp_ms)
        append(line)
    return out


def _render_summary(family: MetricFamily, pairs: Iterable[str]) -> list[str]:
    name = family.name
    name_sum = name + "_sum"
    name_count = name + "_count"
    out = []
    append = out.append
    for m, p in zip(family.metrics, pairs):
        ts = _ts(m)
        for q, v in m.quantiles:
            append(
                series_text(name, p, 'quantile="' + format_sample(q) + '"')
                + " " + format_sample(v) + ts
            )
        append(series_text(name_sum, p) + " " + format_sample(m.sum) + ts)
        append(series_text(name_count, p) + " " + format_sample(float(m.count)) + ts)
    return out


def _render_histogram(family: MetricFamily, pairs: Iterable[str]) -> list[str]:
    name = family.name
    name_bucket = name + "_bucket"
    name_sum = name + "_sum"
    name_count = name + "_count"
    out = []
    append = out.append
    for m, p in zip(family.metrics, pairs):
        ts = _ts(m)
        inf_seen = False
        for ub, c in m.buckets:
            append(
                series_text(name_bucket, p, 'le="' + format_sample(ub) + '"')
                + " " + format_sample(float(c)) + ts
            )
            if ub == _INF:
                inf_seen = True
        count = format_sample(float(m.count))
        if not inf_seen:
            append(series_text(name_bucket, p, 'le="+Inf"') + " " + count + ts)
        append(series_text(name_sum, p) + " " + format_sample(m.sum) + ts)
        append(series_text(name_count, p) + " " + count + ts)
    return out


def render_metrics(family: MetricFamily, pairs: Sequence[str] | None = None) -> bytes:
    """The sample lines of a family, in its metric order, without header.

    ``pairs`` are the metrics' label pairs already rendered (see
    label_pairs_format), one per metric; by default they are rendered from
    the labels, in each dict's order.
    """
    t = family.type
    if pairs is None:
        pairs = [_label_pairs(m.labels) if m.labels else "" for m in family.metrics]
    if t in _PLAIN:
        lines = _render_plain(family, pairs)
    elif t == SUMMARY:
        lines = _render_summary(family, pairs)
    elif t in (HISTOGRAM, GAUGE_HISTOGRAM):
        lines = _render_histogram(family, pairs)
    else:
        raise ValueError(f"unknown metric type {t!r}")
    if not lines:
        return b""
    lines.append("")
    return _encode("\n".join(lines))


def render_family(family: MetricFamily) -> bytes:
    """Header plus sample lines, as MetricFamilyToText writes one family."""
    return render_header(family.name, family.type, family.help) + render_metrics(family)
