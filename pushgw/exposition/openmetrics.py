"""Renderer for OpenMetrics 1.0 text (``application/openmetrics-text; version=1.0.0``).

The official Pushgateway does not offer this format. pushgw must stay a
drop-in replacement, so a Prometheus server scraping OpenMetrics from pushgw
has to store exactly the series (names, labels, values) it stores from the
text format 0.0.4. Hence the sample lines are the text renderer's own
(``render_metrics``: same names, same label order and escaping, same number
formatting, including ``le``/``quantile`` values, which Prometheus 2 keeps as
written); only the metadata lines differ:

- a counter ``x_total`` becomes the OpenMetrics family ``x`` (``# TYPE x
  counter``), whose sample is still ``x_total``;
- a counter whose name does not end in ``_total`` is written as ``unknown``
  under its own name: as a counter, OpenMetrics would name its sample
  ``<name>_total``, a different series than the text format's (Go's
  ``expfmt`` does the same);
- untyped is ``unknown``;
- a gauge histogram is written as ``histogram``: OpenMetrics' own
  ``gaugehistogram`` names its samples ``_gcount``/``_gsum``, so Prometheus
  would store different series than the ``_count``/``_sum`` it stores from the
  text format (which has no gauge histograms and writes them as histograms);
- HELP escapes ``\\``, newline and ``"``;
- timestamps are in seconds (text: milliseconds).

The caller writes ``EOF`` once, after the last family. Native histograms have
no OpenMetrics 1.0 text form: they appear as their classic buckets, count and
sum, as in the text format.

Values are written as stored. Pushed data that breaks OpenMetrics' value rules
(a negative or NaN counter, a float histogram count, ``_count`` other than the
``+Inf`` bucket ...) is still written, as Prometheus accepts it; strict
validators would reject such a family.
"""

from __future__ import annotations

from pushgw.exposition.text_render import _encode, quote_name, render_metrics
from pushgw.model import (
    COUNTER,
    GAUGE,
    GAUGE_HISTOGRAM,
    HISTOGRAM,
    SUMMARY,
    UNTYPED,
    MetricFamily,
)

__all__ = ["CONTENT_TYPE", "EOF", "render_family_om", "render_header_om", "render_metrics_om"]

CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
EOF = b"# EOF\n"

_OM_TYPE = {
    GAUGE: "gauge",
    UNTYPED: "unknown",
    SUMMARY: "summary",
    HISTOGRAM: "histogram",
    GAUGE_HISTOGRAM: "histogram",
}


def _escape_help(text: str) -> str:
    """OpenMetrics escapes backslash, newline and double quote in HELP."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if '"' in text:
        text = text.replace('"', '\\"')
    return text


def om_name_and_type(name: str, type: str) -> tuple[str, str]:  # noqa: A002
    """The OpenMetrics family name and type for a stored family."""
    if type == COUNTER:
        if name.endswith("_total") and len(name) > len("_total"):
            return name[: -len("_total")], "counter"
        return name, "unknown"
    om_type = _OM_TYPE.get(type)
    if om_type is None:
        raise ValueError(f"unknown metric type {type!r}")
    return name, om_type


def render_header_om(name: str, type: str, help: str) -> bytes:  # noqa: A002
    """'# HELP' (only when help is non-empty) and '# TYPE' lines."""
    om_name, om_type = om_name_and_type(name, type)
    n = quote_name(om_name)
    if help:
        return _utf8(f"# HELP {n} {_escape_help(help)}\n# TYPE {n} {om_type}\n")
    return _utf8(f"# TYPE {n} {om_type}\n")


def _utf8(s: str) -> bytes:
    """OpenMetrics must be valid UTF-8 (Prometheus rejects the whole scrape otherwise)."""
    return _valid_utf8(_encode(s))


def _seconds(ms: int) -> str:
    """Milliseconds as exact decimal seconds."""
    sign = "-" if ms < 0 else ""
    whole, frac = divmod(abs(ms), 1000)
    return f"{sign}{whole}.{frac:03d}"


def render_metrics_om(family: MetricFamily) -> bytes:
    """The text format's sample lines, with timestamps in seconds (no metadata)."""
    if all(m.timestamp_ms is None for m in family.metrics):
        return _valid_utf8(render_metrics(family))
    out = []
    for m in family.metrics:
        lines = render_metrics(MetricFamily(family.name, family.type, "", [m]))
        if m.timestamp_ms is not None:
            # Every line of this metric ends in " <ms>"; a label value cannot hide it.
            lines = b"".join(
                line.rsplit(b" ", 1)[0] + b" " + _seconds(m.timestamp_ms).encode() + b"\n"
                for line in lines.splitlines()
            )
        out.append(lines)
    return _valid_utf8(b"".join(out))


def _valid_utf8(b: bytes) -> bytes:
    """Stray surrogates (written as raw bytes by the text renderer) become U+FFFD."""
    try:
        b.decode()
    except UnicodeDecodeError:
        return b.decode("utf-8", "replace").encode()
    return b


def render_family_om(family: MetricFamily) -> bytes:
    """One family in OpenMetrics text: metadata, then the samples in metric order."""
    return render_header_om(family.name, family.type, family.help) + render_metrics_om(family)
