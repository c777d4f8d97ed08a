"""The metric data model shared by the parsers, the renderers and the store.

It mirrors the ``io.prometheus.client.MetricFamily`` protobuf message that the
official Pushgateway works with, so that text and protobuf pushes end up in the
same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COUNTER = "counter"
GAUGE = "gauge"
UNTYPED = "untyped"
SUMMARY = "summary"
HISTOGRAM = "histogram"

METRIC_TYPES = (COUNTER, GAUGE, UNTYPED, SUMMARY, HISTOGRAM)


@dataclass(slots=True)
class Metric:
    """One series of a family (one ``dto.Metric``).

    Counters, gauges and untyped metrics use ``value``; summaries use
    ``quantiles``, ``count`` and ``sum``; histograms use ``buckets``, ``count``
    and ``sum``. Counts are integers, as in the protobuf model, so a text push
    of ``x_count 1.5`` stores 1 exactly as the official does.
    """

    labels: dict[str, str]
    value: float = 0.0
    count: int = 0
    sum: float = 0.0
    quantiles: list[tuple[float, float]] = field(default_factory=list)
    buckets: list[tuple[float, int]] = field(default_factory=list)
    timestamp_ms: int | None = None


@dataclass(slots=True)
class MetricFamily:
    """A named, typed family of metrics. ``help`` is ``""`` when absent."""

    name: str
    type: str
    help: str = ""
    metrics: list[Metric] = field(default_factory=list)
