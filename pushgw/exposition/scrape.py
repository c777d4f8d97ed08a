"""The scrape body in each format: the gateway's own families merged with the store's.

Families come sorted by name, as the official gathers them; a pushed family
named like one of the gateway's own is merged into it under the gateway's
HELP (the consistency check has ensured the type). The text format is the
store's own pre-rendered bytes; the other formats derive a block per family
and keep it until the store replaces that family.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from enum import Enum

from pushgw.exposition.openmetrics import EOF, render_family_om, render_header_om
from pushgw.exposition.protobuf import encode_family, encode_metrics, frame_family
from pushgw.exposition.text_render import render_family
from pushgw.model import GAUGE_HISTOGRAM, MetricFamily
from pushgw.storage.store import MergedFamily, MetricStore, StoredFamily


class Format(Enum):
    TEXT = "text/plain; version=0.0.4; charset=utf-8"
    OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    OPENMETRICS_0_0_1 = "application/openmetrics-text; version=0.0.1; charset=utf-8"
    PROTOBUF = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"


class Exposition:
    """Renders scrapes of one store, caching the derived per-family blocks."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        self._blocks: dict[tuple[Format, str], tuple[MergedFamily, bytes]] = {}

    def render(self, fmt: Format, own: Iterable[MetricFamily]) -> bytes:
        store = self.store
        own_by_name = {f.name: f for f in own}
        parts: list[bytes | memoryview] = []
        last = None
        for name in heapq.merge(sorted(own_by_name), store.family_names()):
            if name == last:
                continue
            last = name
            family = own_by_name.get(name)
            if family is None:
                parts.append(self._block(fmt, store.merged(name)))
            elif store.has_family(name):
                parts.append(self._own_with_pushed(fmt, family, store.merged(name)))
            elif family.metrics:
                parts.append(_own(fmt, family))
        if fmt in (Format.OPENMETRICS, Format.OPENMETRICS_0_0_1):
            parts.append(EOF)
        if len(self._blocks) > 2 * len(store.family_names()) + 64:
            self._prune()
        return b"".join(parts)

    def _block(self, fmt: Format, merged: MergedFamily) -> bytes:
        if fmt is Format.TEXT:
            return merged.text
        key = (fmt, merged.name)
        hit = self._blocks.get(key)
        if hit is not None and hit[0] is merged:
            return hit[1]
        if fmt is Format.PROTOBUF:
            block = frame_family(merged.name, merged.help, merged.type, self._proto(merged))
        elif merged.type == GAUGE_HISTOGRAM:  # its OpenMetrics lines differ from the text ones
            metrics = [m for part in merged.parts for m in self.store.metrics_of(part)]
            block = render_family_om(MetricFamily(merged.name, merged.type, merged.help, metrics))
        else:
            block = render_header_om(merged.name, merged.type, merged.help) + merged.lines
        self._blocks[key] = (merged, block)
        return block

    def _own_with_pushed(self, fmt: Format, own: MetricFamily, merged: MergedFamily) -> bytes:
        if fmt is Format.TEXT:
            return render_family(own) + merged.lines
        if fmt is Format.PROTOBUF:
            return frame_family(own.name, own.help, own.type, encode_metrics(own) + self._proto(merged))
        return render_family_om(own) + merged.lines  # own families are never gauge histograms

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


def _own(fmt: Format, family: MetricFamily) -> bytes:
    if fmt is Format.TEXT:
        return render_family(family)
    if fmt is Format.PROTOBUF:
        return encode_family(family)
    return render_family_om(family)
