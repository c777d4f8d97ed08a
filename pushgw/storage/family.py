"""One family as the store keeps it, and preparing a push into such families.

Preparing (sanitising labels, sorting, rendering, the checks a push can fail
on its own) needs nothing of the store, so it can run in a worker process;
the store only checks the prepared families against what it holds and
applies them.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b

from pushgw.exposition.protobuf import encode_metrics
from pushgw.exposition.text_render import quote_name, render_metrics
from pushgw.model import SUMMARY, MetricFamily
from pushgw.names import is_legacy_metric_name
from pushgw.storage.consistency import (
    HISTOGRAMS,
    Inconsistency,
    check_duplicates,
    check_label_names,
    has_timestamps,
)
from pushgw.storage.labels import LabelledSeries, labelled_series
from pushgw.storage.limits import Limits, check_push

PUSH_TIME = "push_time_seconds"
PUSH_FAILURE_TIME = "push_failure_time_seconds"
TIME_NAMES = frozenset((PUSH_TIME, PUSH_FAILURE_TIME))


@dataclass(slots=True)
class StoredFamily:
    """One family of one group, as pushed, with its samples rendered."""

    name: str
    type: str
    help: str
    lines: bytes
    hashes: array  # series_hashes of the metrics, to keep the index exact on removal
    pushed_at: float
    sort_key: tuple = ()  # of the first series: orders the groups within a merged family
    # Histogram metrics (by position) whose +Inf bucket the renderer added;
    # the JSON API leaves it out again, as the official does.
    added_inf: tuple[int, ...] = ()
    # The metrics as encoded protobuf ``metric`` fields: the source of truth
    # for native histograms (``native``; text cannot carry them), else derived
    # on the first protobuf scrape and kept as a cache.
    proto: bytes | None = None
    native: bool = False
    # Some name in it (family or label) is not a legacy-valid metric name: a
    # scrape that does not allow UTF-8 names gets it escaped.
    utf8: bool = False
    # The lines as a gzip member, made by the first gzip scrape and kept, so a
    # compressed scrape only compresses what changed since the last one.
    gz: bytes | None = None
    # A digest of the series (type and stored labels, in order), made when the
    # push is prepared; b"" when unknown (restored). Jobs mostly push the same
    # series again with new values: equal digests let the store keep the
    # series' index entries instead of hashing and re-indexing every series.
    series_digest: bytes = b""



@dataclass(slots=True)
class PreparedPush:
    """A push ready for the store: rendered families and what they failed on their own."""

    families: dict[str, StoredFamily]
    pushed_at: float
    timestamps: bool  # some sample has one: the push is refused (even unchecked)
    problem: str | None  # an inconsistency within the push itself


def prepare_push(
    families: dict[str, MetricFamily],
    grouping: dict[str, str],
    pushed_at: float,
    utf8_names: bool = False,
    limits: Limits = Limits(),
) -> PreparedPush:
    """Everything about a push that does not depend on the store (raises LimitExceeded).

    The gateway's own time families in a body are dropped, as the official does.
    """
    families = {n: f for n, f in families.items() if n not in TIME_NAMES}
    check_push(limits, families.values(), grouping)
    problem = None
    stored = {}
    for name, family in families.items():
        series = labelled_series(family.metrics, grouping)
        stored[name] = stored_family(family, series, pushed_at, utf8_names)
        if problem is None:
            try:
                check_label_names(name, series.label_names, utf8_names)
                check_duplicates(name, family.type, series.pairs)
            except Inconsistency as err:
                problem = str(err)
    return PreparedPush(stored, pushed_at, has_timestamps(families.values()), problem)


def needs_escaping(name: str, label_names: Iterable[str]) -> bool:
    """Whether the family or any of its label names is not a legacy-valid metric name.

    prometheus/common escapes exactly those names (label names included: a
    ``:`` in a label name is left alone, as Go's EscapeMetricFamily does).
    """
    return not (is_legacy_metric_name(name) and all(map(is_legacy_metric_name, label_names)))


def stored_family(
    family: MetricFamily, series: LabelledSeries, pushed_at: float, utf8_names: bool = False
) -> StoredFamily:
    """Render a family for storage, its metrics labelled and ordered as in ``series``.

    Only a store that accepts UTF-8 names (``utf8_names``) looks at the names:
    a legacy store holds legacy names only.
    """
    metrics = list(series.metrics)
    native = any(m.native is not None for m in metrics)
    if native:  # the protobuf encoder reads the labels from the metrics
        for i, metric in enumerate(metrics):
            metric.labels = series.labels(i)
    family = MetricFamily(family.name, family.type, family.help, metrics)
    added_inf: tuple[int, ...] = ()
    if family.type in HISTOGRAMS:
        added_inf = tuple(
            i for i, m in enumerate(metrics) if all(b != math.inf for b, _ in m.buckets)
        )
    lines = render_metrics(family, series.pairs)
    digest = blake2b(f"{family.type}\n".encode(), digest_size=16)
    digest.update("\n".join(series.pairs).encode("utf-8", "surrogatepass"))
    # The series hashes are left to the store: they are salted per process.
    return StoredFamily(
        family.name, family.type, family.help, lines, array("q"), pushed_at,
        series.orders[0] if metrics else (), added_inf,
        encode_metrics(family) if native else None, native,
        utf8_names and needs_escaping(family.name, series.label_names),
        series_digest=digest.digest(),
    )


def series_hashes(name: str, kind: str, lines: bytes) -> array:
    """The identity of each series, from its rendered line (name and sorted, escaped labels).

    Derived from the stored bytes alone, so a restore needs no parsing; one
    line per series: the ``_count`` line of a summary or histogram. Python's
    hash is salted per process, so these are never persisted. Collisions are
    resolved by the caller (see MetricStore._holds).
    """
    return array("q", map(hash, series_identities(name, kind, lines)))


def series_identities(name: str, kind: str, lines: bytes) -> list[bytes]:
    """Each series' rendered name and labels (its line without the value)."""
    return [line.rpartition(b" ")[0] for line in _series_lines(name, kind, lines)]


def _count_marker(name: str) -> tuple[bytes, tuple[bytes, bytes]]:
    """How the ``_count`` line of a summary or histogram starts, and what follows that."""
    count = quote_name(name + "_count").encode()
    # A quoted name stands inside the braces: {"a.b_count",x="1"} 1
    return (count, (b"{", b" ")) if count[:1] != b'"' else (b"{" + count, (b",", b"}"))


def _series_lines(name: str, kind: str, lines: bytes) -> list[bytes]:
    """One rendered line per series (the ``_count`` line of a summary or histogram)."""
    all_lines = lines.split(b"\n")
    if kind != SUMMARY and kind not in HISTOGRAMS:
        return [line for line in all_lines if line]
    marker, ends = _count_marker(name)
    return [
        line for line in all_lines
        if line.startswith(marker) and line[len(marker):len(marker) + 1] in ends
    ]


def count_series(name: str, kind: str, lines: bytes) -> int:
    """len(_series_lines(...)), without splitting the lines."""
    if kind != SUMMARY and kind not in HISTOGRAMS:
        return lines.count(b"\n")  # every line ends with one
    marker, ends = _count_marker(name)
    # The first line is never a _count line: the _sum line comes before it.
    return sum(lines.count(b"\n" + marker + end) for end in ends)


def first_series(stored: StoredFamily) -> StoredFamily:
    """A stand-in holding only the first series' lines (enough for its labels)."""
    if stored.native:
        return stored
    lines = stored.lines
    if stored.type != SUMMARY and stored.type not in HISTOGRAMS:
        end = lines.find(b"\n") + 1
    else:
        marker, ends = _count_marker(stored.name)
        starts = [i for i in (lines.find(b"\n" + marker + e) for e in ends) if i >= 0]
        end = lines.find(b"\n", min(starts) + 1) + 1 if starts else 0
    return StoredFamily(stored.name, stored.type, "", lines[:end], array("q"), 0.0)
