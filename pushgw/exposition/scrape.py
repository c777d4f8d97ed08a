"""The scrape body in each format: the gateway's own families merged with the store's.

Families come sorted by name, as the official gathers them; a pushed family
named like one of the gateway's own is merged into it under the gateway's
HELP (the consistency check has ensured the type). The text format is the
store's own pre-rendered bytes; the other formats derive a block per family
and keep it until the store replaces that family.

Names that are not legacy-valid (only stored with --push.enable-utf8-names)
go out quoted when the scraper allows UTF-8 names, else escaped with the
scheme it asked for (prometheus/common's EscapeMetricFamily). A family that
needs escaping gets a derived block per format and scheme, also in the text
format; every other family is the same bytes whatever the scheme.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from enum import Enum

from pushgw.exposition.openmetrics import EOF, render_family_om, render_header_om, render_metrics_om
from pushgw.exposition.protobuf import encode_family, encode_metrics, frame_family
from pushgw.exposition.text_render import render_family, render_metrics
from pushgw.model import GAUGE_HISTOGRAM, MetricFamily
from pushgw.names import DEFAULT_ESCAPING, Escaping, escape_name, is_legacy_metric_name
from pushgw.storage.family import StoredFamily
from pushgw.storage.store import MergedFamily, MetricStore


class Format(Enum):
    TEXT = "text/plain; version=0.0.4; charset=utf-8"
    OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    OPENMETRICS_0_0_1 = "application/openmetrics-text; version=0.0.1; charset=utf-8"
    PROTOBUF = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"


class Exposition:
    """Renders scrapes of one store, caching the derived per-family blocks."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        # (format, name) or, for escaped blocks, (format, name, scheme).
        self._blocks: dict[tuple, tuple[MergedFamily, bytes]] = {}

    def render(
        self, fmt: Format, own: Iterable[MetricFamily], escaping: Escaping = DEFAULT_ESCAPING
    ) -> bytes:
        """The scrape body; ``escaping`` is what the scraper accepts for names."""
        return b"".join(
            piece.lines if isinstance(piece, StoredFamily) else piece
            for piece in self.pieces(fmt, own, escaping)
        )

    def pieces(
        self, fmt: Format, own: Iterable[MetricFamily], escaping: Escaping = DEFAULT_ESCAPING
    ) -> list[bytes | memoryview | StoredFamily]:
        """The scrape body in order: bytes, or a stored family standing for its text lines.

        The text lines of a stored family are the same in the text format and
        OpenMetrics, so a compressed copy of them can be kept with it (see
        the scrape handler); only headers and the gateway's own families are
        rendered per scrape.
        """
        store = self.store
        escape = escaping is not Escaping.ALLOW_UTF8
        lines_shared = fmt is not Format.PROTOBUF
        own_by_name = {f.name: f for f in own}
        out: list[bytes | memoryview | StoredFamily] = []
        last = None
        for name in heapq.merge(sorted(own_by_name), store.family_names()):
            if name == last:
                continue
            last = name
            family = own_by_name.get(name)
            if family is None:
                merged = store.merged(name)
                if escape and merged.utf8:
                    out.append(self._escaped_block(fmt, merged, escaping))
                elif lines_shared and merged.type != GAUGE_HISTOGRAM:
                    out.append(self._header(fmt, merged))
                    out.extend(merged.parts)
                else:
                    out.append(self._block(fmt, merged))
            elif store.has_family(name):
                merged = store.merged(name)
                if escape and merged.utf8:
                    out.append(self._own_with_escaped(fmt, family, self._escaped(merged, escaping)))
                elif lines_shared:  # own families are never gauge histograms
                    out.append(_own(fmt, family))
                    out.extend(merged.parts)
                else:
                    out.append(frame_family(family.name, family.help, family.type,
                                            encode_metrics(family) + self._proto(merged)))
            elif family.metrics:
                out.append(_own(fmt, family))
        if fmt in (Format.OPENMETRICS, Format.OPENMETRICS_0_0_1):
            out.append(EOF)
        if len(self._blocks) > 2 * len(store.family_names()) + 64:
            self._prune()
        return out

    def _header(self, fmt: Format, merged: MergedFamily) -> bytes | memoryview:
        if fmt is Format.TEXT:
            return memoryview(merged.text)[: merged.header_length]
        key = (fmt, merged.name)
        hit = self._blocks.get(key)
        if hit is None or hit[0] is not merged:
            hit = self._blocks[key] = (merged, render_header_om(merged.name, merged.type, merged.help))
        return hit[1]

    def _block(self, fmt: Format, merged: MergedFamily) -> bytes:
        """A whole family for protobuf, or an OpenMetrics gauge histogram (its lines differ)."""
        key = (fmt, merged.name)
        hit = self._blocks.get(key)
        if hit is not None and hit[0] is merged:
            return hit[1]
        if fmt is Format.PROTOBUF:
            block = frame_family(merged.name, merged.help, merged.type, self._proto(merged))
        else:
            metrics = [m for part in merged.parts for m in self.store.metrics_of(part)]
            block = render_family_om(MetricFamily(merged.name, merged.type, merged.help, metrics))
        self._blocks[key] = (merged, block)
        return block

    def _escaped_block(self, fmt: Format, merged: MergedFamily, escaping: Escaping) -> bytes:
        key = (fmt, merged.name, escaping)
        hit = self._blocks.get(key)
        if hit is not None and hit[0] is merged:
            return hit[1]
        block = _own(fmt, self._escaped(merged, escaping))
        self._blocks[key] = (merged, block)
        return block

    def _escaped(self, merged: MergedFamily, escaping: Escaping) -> MetricFamily:
        """The merged family with its names escaped (Go's EscapeMetricFamily).

        Names that are legacy-valid metric names stay as they are. Label order
        is kept; two label names that escape alike collapse into the later one.
        """
        metrics = [m for part in merged.parts for m in self.store.metrics_of(part)]
        for m in metrics:
            m.labels = _escape_labels(m.labels, escaping)
        return MetricFamily(_escape(merged.name, escaping), merged.type, merged.help, metrics)

    def _own_with_escaped(self, fmt: Format, own: MetricFamily, pushed: MetricFamily) -> bytes:
        """An own family (legacy name) plus pushed series whose label names were escaped."""
        if fmt is Format.TEXT:
            return render_family(own) + render_metrics(pushed)
        if fmt is Format.PROTOBUF:
            return frame_family(own.name, own.help, own.type, encode_metrics(own) + encode_metrics(pushed))
        return render_family_om(own) + render_metrics_om(pushed)

    def _proto(self, merged: MergedFamily) -> bytes:
        return b"".join(self._part_proto(part) for part in merged.parts)

    def _part_proto(self, part: StoredFamily) -> bytes:
        if part.proto is None:  # derived once, kept with the stored family
            metrics = self.store.metrics_of(part)
            part.proto = encode_metrics(MetricFamily(part.name, part.type, part.help, metrics))
        return part.proto

    def _prune(self) -> None:
        """Drop blocks of families the store has replaced or removed."""
        store = self.store
        self._blocks = {
            key: hit for key, hit in self._blocks.items()
            if store.has_family(key[1]) and store.merged(key[1]) is hit[0]
        }


def _escape(name: str, escaping: Escaping) -> str:
    return name if is_legacy_metric_name(name) else escape_name(name, escaping)


def _escape_labels(labels: dict[str, str], escaping: Escaping) -> dict[str, str]:
    return {_escape(k, escaping): v for k, v in labels.items()}


def _own(fmt: Format, family: MetricFamily) -> bytes:
    if fmt is Format.TEXT:
        return render_family(family)
    if fmt is Format.PROTOBUF:
        return encode_family(family)
    return render_family_om(family)
