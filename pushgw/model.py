"""The metric data model shared by the parsers, the renderers and the store.

It mirrors the ``io.prometheus.client.MetricFamily`` protobuf message that the
official Pushgateway works with, so that text and protobuf pushes end up in the
same shape.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

COUNTER = "counter"
GAUGE = "gauge"
UNTYPED = "untyped"
SUMMARY = "summary"
HISTOGRAM = "histogram"
GAUGE_HISTOGRAM = "gaugehistogram"

METRIC_TYPES = (COUNTER, GAUGE, UNTYPED, SUMMARY, HISTOGRAM, GAUGE_HISTOGRAM)


@dataclass(slots=True)
class Metric:
    """One series of a family (one ``dto.Metric``).

    Counters, gauges and untyped metrics use ``value``; summaries use
    ``quantiles``, ``count`` and ``sum``; histograms use ``buckets``, ``count``
    and ``sum``. Counts are integers, as in the protobuf model (a text push of
    ``x_count 1.5`` in a summary stores 1, as the official does), except in
    float histograms, whose counts are all floats.

    ``native`` is the serialised ``io.prometheus.client.Histogram`` of a
    protobuf push that carries native-histogram data: kept verbatim, since
    only the protobuf exposition can carry it on to Prometheus.
    """

    labels: dict[str, str]
    value: float = 0.0
    count: int | float = 0
    sum: float = 0.0
    quantiles: list[tuple[float, float]] = field(default_factory=list)
    buckets: list[tuple[float, int | float]] = field(default_factory=list)
    timestamp_ms: int | None = None
    native: bytes | None = None


@dataclass(slots=True)
class MetricFamily:
    """A named, typed family of metrics. ``help`` is ``""`` when absent."""

    name: str
    type: str
    help: str = ""
    metrics: list[Metric] = field(default_factory=list)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many model objects are built.

    A big push allocates many small objects, none of them in reference
    cycles; collections triggered by them would scan the whole (possibly
    large) heap in vain. Nested pauses leave the outermost one in charge.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
