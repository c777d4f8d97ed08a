"""Choosing the scrape format from the ``Accept`` header, as Prometheus asks for it.

Prometheus sends e.g. ``application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;
encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3``.
The highest-q acceptable entry wins; ties keep the header's order; anything
unknown falls back to the text format 0.0.4.

The name escaping comes from the ``escaping`` parameter, as prometheus/common's
Negotiate finds it: the last known value among the entries looked at up to
and including the chosen one (all of them when none is chosen), in that
order; ``underscores`` without one. Prometheus 3 puts ``escaping=allow-utf-8``
on its OpenMetrics 1.0 and text 1.0 entries only, so e.g. a text 0.0.4 entry
after a text 1.0 one still gets UTF-8 names.
"""

from __future__ import annotations

from pushgw.exposition.scrape import Format
from pushgw.names import DEFAULT_ESCAPING, Escaping, escaping_from_param


def negotiate(accept: str) -> Format:
    return negotiate_scrape(accept)[0]


def negotiate_scrape(accept: str) -> tuple[Format, Escaping]:
    """The scrape format and the escaping of names for an ``Accept`` header."""
    entries = []
    for position, part in enumerate(accept.split(",")):
        media, params = _parse(part)
        if not media:
            continue
        q = _quality(params.pop("q", "1"))
        if q > 0:
            entries.append((-q, position, media, params))
    escaping = DEFAULT_ESCAPING
    for _, _, media, params in sorted(entries, key=lambda e: e[:2]):
        escaping = escaping_from_param(params.get("escaping")) or escaping
        chosen = _match(media, params)
        if chosen is not None:
            return chosen, escaping
    return Format.TEXT, escaping


def content_type(fmt: Format, escaping: Escaping) -> str:
    """The answer's Content-Type, with the escaping as the official's promhttp writes it."""
    return f"{fmt.value}; escaping={escaping.value}"


def _match(media: str, params: dict[str, str]) -> Format | None:
    if media == "application/vnd.google.protobuf":
        if params.get("proto") == "io.prometheus.client.MetricFamily" and params.get("encoding") == "delimited":
            return Format.PROTOBUF
        return None
    if media == "application/openmetrics-text":
        version = params.get("version", "1.0.0")
        if version == "1.0.0":
            return Format.OPENMETRICS
        if version == "0.0.1":
            return Format.OPENMETRICS_0_0_1
        return None
    if media in ("text/plain", "text/*", "*/*"):
        return Format.TEXT
    return None


def _parse(part: str) -> tuple[str, dict[str, str]]:
    media, *raw_params = (p.strip() for p in part.split(";"))
    params = {}
    for raw in raw_params:
        name, _, value = raw.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return media.lower(), params


def _quality(text: str) -> float:
    try:
        return min(max(float(text), 0.0), 1.0)
    except ValueError:
        return 0.0
