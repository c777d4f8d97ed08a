"""Choosing the scrape format from the ``Accept`` header, as Prometheus asks for it.

Prometheus sends e.g. ``application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;
encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3``.
The highest-q acceptable entry wins; ties keep the header's order; anything
unknown falls back to the text format 0.0.4.
"""

from __future__ import annotations

from pushgw.exposition.scrape import Format


def negotiate(accept: str) -> Format:
    entries = []
    for position, part in enumerate(accept.split(",")):
        media, params = _parse(part)
        if not media:
            continue
        q = _quality(params.pop("q", "1"))
        if q > 0:
            entries.append((-q, position, media, params))
    for _, _, media, params in sorted(entries):
        chosen = _match(media, params)
        if chosen is not None:
            return chosen
    return Format.TEXT


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
