"""The labels a pushed series is stored with, and the official's order of series.

Every series gets the grouping labels (they win over its own) and
``instance=""`` when it has no instance; label names are sorted, as the
official's exposition has them. The series of one family nearly always share
their label names, so how the labels merge is worked out once per distinct
tuple of names (a :class:`LabelLayout`) and then applied to each series'
values with one C-level ``itemgetter`` call: a 10,000-series push spends its
time on the values, not on re-deciding the same merge 10,000 times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from pushgw.exposition.text_render import escape_label_values, label_pairs_format
from pushgw.model import Metric

# A series' place in the official's order: label count, then values (names sorted).
SeriesOrder = tuple[int, tuple[str, ...]]


class LabelLayout(NamedTuple):
    """How series with one tuple of own label names are stored."""

    names: tuple[str, ...]  # the stored label names, sorted
    # Own values + grouping values + ("",) -> the stored values, in name order.
    pick: Callable[[tuple[str, ...]], tuple[str, ...]]
    pairs_format: str  # the text-format label pairs, to %-format with escaped values


@dataclass(slots=True)
class LabelledSeries:
    """A family's metrics in the official's order, with their stored labels."""

    metrics: tuple[Metric, ...]  # as pushed: their own labels are left alone
    orders: tuple[SeriesOrder, ...]  # each holds the stored label values
    pairs: tuple[str, ...]  # the stored labels rendered and escaped: 'instance="",job="x"'
    names: tuple[tuple[str, ...], ...]  # the stored label names
    label_names: set[str]  # every stored label name of the family

    def labels(self, i: int) -> dict[str, str]:
        """The stored labels of metric ``i`` as a dict (for encoders that need one)."""
        return dict(zip(self.names[i], self.orders[i][1]))


def layout(own: tuple[str, ...], grouping: dict[str, str]) -> LabelLayout:
    """The layout for series whose own label names are ``own`` (see module doc)."""
    position = {name: i for i, name in enumerate(own)}
    position.update((name, len(own) + i) for i, name in enumerate(grouping))
    position.setdefault("instance", len(own) + len(grouping))  # the "" appended to the values
    names = tuple(sorted(position))
    indexes = [position[n] for n in names]
    if len(indexes) == 1:
        only = indexes[0]
        pick: Callable[[tuple[str, ...]], tuple[str, ...]] = lambda values: (values[only],)
    else:
        pick = itemgetter(*indexes)
    return LabelLayout(names, pick, label_pairs_format(names))


def labelled_series(metrics: Iterable[Metric], grouping: dict[str, str]) -> LabelledSeries:
    """The metrics with their stored labels, in the official's order.

    The order is :func:`series_order` of the stored labels; metrics that tie
    (duplicates) keep the order they were pushed in.
    """
    extra = (*grouping.values(), "")
    layouts: dict[tuple[str, ...], LabelLayout] = {}
    rows = []  # plain tuples: building a NamedTuple per series costs ten times as much
    append = rows.append
    for metric in metrics:
        labels = metric.labels
        own = tuple(labels)
        found = layouts.get(own)
        if found is None:
            found = layouts[own] = layout(own, grouping)
        names, pick, pairs_format = found
        values = pick((*labels.values(), *extra))
        append(((len(names), values), pairs_format % escape_label_values(values), metric, names))
    rows.sort(key=itemgetter(0))
    label_names = set().union(*(found.names for found in layouts.values()))
    if not rows:
        return LabelledSeries((), (), (), (), label_names)
    orders, pairs, sorted_metrics, names_of = zip(*rows)
    return LabelledSeries(sorted_metrics, orders, pairs, names_of, label_names)


def series_order(metric: Metric) -> SeriesOrder:
    """The official's order of series: by label count, then label values (names sorted).

    For a metric whose labels are already stored (sorted by name).
    """
    return len(metric.labels), tuple(metric.labels.values())
