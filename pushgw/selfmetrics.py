"""The gateway's own metrics, exposed on /metrics next to the pushed ones.

They live in a registry of their own (not prometheus-client's global one), so
several gateways can run in one process, as the tests do. Their families are
converted to the shared model so that one renderer writes the whole scrape and
pushed families of the same name can be merged into them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric as ClientFamily

from pushgw import __version__
from pushgw.model import COUNTER, GAUGE, HISTOGRAM, SUMMARY, UNTYPED, Metric, MetricFamily
from pushgw.storage.consistency import ReservedFamily
from pushgw.summary import Summary

_TYPES = {
    "counter": COUNTER,
    "gauge": GAUGE,
    "summary": SUMMARY,
    "histogram": HISTOGRAM,
    "unknown": UNTYPED,
    "untyped": UNTYPED,
    "info": GAUGE,
}


class GatewayMetrics:
    """Request instrumentation, build info, process and store-size metrics."""

    def __init__(self, store_size: Callable[[], tuple[int, int, int, int]], clustered: bool = False) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        build = Gauge(
            "pushgateway_build_info",
            "A metric with a constant '1' value labeled by version, revision, branch, "
            "and the Python version from which pushgw was built.",
            ["version", "revision", "branch", "pythonversion"],
            registry=self.registry,
        )
        build.labels(__version__, "", "", platform.python_version()).set(1)
        self.requests = Counter(
            "pushgateway_http_requests_total",
            "Total HTTP requests processed by the Pushgateway, excluding scrapes.",
            ["code", "handler", "method"],
            registry=self.registry,
        )
        self.push_duration = Summary(
            "pushgateway_http_push_duration_seconds",
            "HTTP request duration for pushes to the Pushgateway.",
            ["method"],
            registry=self.registry,
        )
        self.push_size = Summary(
            "pushgateway_http_push_size_bytes",
            "HTTP request size for pushes to the Pushgateway.",
            ["method"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "pushgateway_push_refusals_total",
            "Pushes and deletes refused, by reason (the official has no such metric).",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_StoreSizeCollector(store_size))
        self._cluster = _ClusterCollector(self.registry) if clustered else None
        self._reserved = {
            f.name: ReservedFamily(f.type, f.help, strict_help=not f.metrics)
            for f in self.families()
        }

    def reserved(self) -> dict[str, ReservedFamily]:
        """Own family names pushes must respect (taken at start-up, as the official does)."""
        return self._reserved

    def watch_engine(self, engine: object) -> None:
        """Report a shared database's round trips, log position and reconnects."""
        if self._cluster is not None and getattr(engine, "shared", False):
            self._cluster.engine = engine
            engine.observe_roundtrip = self._cluster.roundtrip.observe  # type: ignore[attr-defined]

    def watch_follower(self, follower: object) -> None:
        if self._cluster is not None:
            follower.observe_lag = self._cluster.lag.observe  # type: ignore[attr-defined]

    def families(self) -> list[MetricFamily]:
        return [convert_family(f) for f in self.registry.collect()]


class _StoreSizeCollector:
    """Metrics the official lacks: groups and series stored, inconsistent and expired groups."""

    def __init__(self, store_size: Callable[[], tuple[int, int, int, int]]) -> None:
        self._store_size = store_size

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        groups, series, expired, inconsistent = self._store_size()
        yield GaugeMetricFamily(
            "pushgateway_metric_groups", "Number of metric groups stored.", value=groups
        )
        yield GaugeMetricFamily(
            "pushgateway_stored_series",
            "Number of series stored, not counting push_time_seconds and push_failure_time_seconds.",
            value=series,
        )
        yield GaugeMetricFamily(
            "pushgateway_inconsistent_groups",
            "Groups holding pushes that failed the consistency check under "
            "--push.disable-consistency-check; those are kept out of the exposition.",
            value=inconsistent,
        )
        yield CounterMetricFamily(
            "pushgateway_groups_expired",
            "Groups removed because their time to live ran out.",
            value=expired,
        )


class _ClusterCollector:
    """Replication metrics of a replica sharing PostgreSQL (--persistence.url)."""

    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

    def __init__(self, registry: CollectorRegistry) -> None:
        self.engine: object | None = None
        self.lag = Histogram(
            "pushgateway_replication_lag_seconds",
            "Time from another replica's commit until this replica applied it, "
            "when it follows notifications or polls (reads catch up on their own).",
            buckets=self.BUCKETS, registry=registry,
        )
        self.roundtrip = Histogram(
            "pushgateway_database_roundtrip_seconds",
            "Duration of the smallest query to PostgreSQL (the log position, asked before reads).",
            buckets=self.BUCKETS, registry=registry,
        )
        registry.register(self)

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        engine = self.engine
        yield GaugeMetricFamily(
            "pushgateway_replication_position",
            "Position in the cluster's change log that this replica's state holds.",
            value=getattr(engine, "position", 0),
        )
        yield GaugeMetricFamily(
            "pushgateway_replication_checkpoint_position",
            "Newest checkpoint position this replica knows of: the database's tables hold the state "
            "as of it, and the log after it is kept for starting replicas to apply.",
            value=getattr(getattr(engine, "changed", None), "checkpoint", 0),
        )
        yield CounterMetricFamily(
            "pushgateway_database_reconnects",
            "Connections to PostgreSQL opened again after one was lost.",
            value=getattr(engine, "reconnects", 0),
        )


def convert_family(family: ClientFamily) -> MetricFamily:
    """A prometheus-client family in the shared model (``_created`` samples dropped)."""
    kind = _TYPES.get(family.type, UNTYPED)
    name = family.name + "_total" if kind == COUNTER else family.name
    name = family.name + "_info" if family.type == "info" else name
    by_labels: dict[tuple[tuple[str, str], ...], Metric] = {}
    for sample in family.samples:
        if sample.name.endswith("_created"):
            continue
        labels = dict(sample.labels)
        extra = labels.pop("le", None) if kind == HISTOGRAM else None
        quantile = labels.pop("quantile", None) if kind == SUMMARY else None
        key = tuple(sorted(labels.items()))
        metric = by_labels.get(key)
        if metric is None:
            metric = by_labels[key] = Metric(labels=dict(key))
        if sample.name.endswith("_count") and kind in (SUMMARY, HISTOGRAM):
            metric.count = int(sample.value)
        elif sample.name.endswith("_sum") and kind in (SUMMARY, HISTOGRAM):
            metric.sum = sample.value
        elif extra is not None:
            metric.buckets.append((float(extra), int(sample.value)))
        elif quantile is not None:
            metric.quantiles.append((float(quantile), sample.value))
        else:
            metric.value = sample.value
    return MetricFamily(name, kind, family.documentation, list(by_labels.values()))
