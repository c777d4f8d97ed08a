"""Limits that keep one push, or many, from exhausting the gateway's memory.

A push over a limit is refused before anything is stored: 400 for what the
push itself carries (it will never fit), 429 for what the store holds
(it may fit once groups are deleted or expire). The message names the limit,
its value and the flag that sets it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pushgw.model import MetricFamily


@dataclass(frozen=True, slots=True)
class Limits:
    """0 disables a limit."""

    series_per_push: int = 0
    labels_per_series: int = 0
    label_value_length: int = 0
    groups: int = 0
    series: int = 0


class LimitExceeded(Exception):
    """A push refused by a limit; nothing was stored."""

    def __init__(self, reason: str, message: str, status: int) -> None:
        super().__init__(reason, message, status)  # all in args: it crosses process boundaries
        self.reason = reason  # for the refusal counter
        self.status = status

    def __str__(self) -> str:
        return str(self.args[1])


def check_push(limits: Limits, families: Iterable[MetricFamily], grouping: dict[str, str] | None = None) -> None:
    """The limits on what one push carries, its grouping labels (from the URL path) included.

    Every stored series carries the grouping labels, so they count toward
    ``labels_per_series`` (a series label the grouping overrides counts once)
    and ``label_value_length``, even when the body is empty.
    """
    grouping = grouping or {}
    if grouping:
        _check_labels(limits, grouping, len(grouping), None)
    series = 0
    for family in families:
        series += len(family.metrics)
        for metric in family.metrics:
            count = len(metric.labels)
            if grouping and limits.labels_per_series and count + len(grouping) > limits.labels_per_series:
                count = len(metric.labels.keys() | grouping.keys())
            _check_labels(limits, metric.labels, count, family.name)
    if limits.series_per_push and series > limits.series_per_push:
        raise LimitExceeded(
            "series_per_push",
            f"push has {series} series, more than the limit of {limits.series_per_push} "
            "(--push.max-series-per-push)",
            400,
        )


_PATH = "grouping key (URL path)"


def _check_labels(limits: Limits, labels: dict[str, str], count: int, family: str | None) -> None:
    """``count`` labels and the length of each value in ``labels`` (a series, or the grouping key)."""
    if limits.labels_per_series and count > limits.labels_per_series:
        what = f"series of {family}" if family is not None else f"the {_PATH}"
        raise LimitExceeded(
            "labels_per_series",
            f"{what} has {count} labels, more than the limit of "
            f"{limits.labels_per_series} (--push.max-labels-per-series)",
            400,
        )
    if limits.label_value_length:
        for name, value in labels.items():
            if len(value) > limits.label_value_length:
                where = f"of {family}" if family is not None else f"in the {_PATH}"
                raise LimitExceeded(
                    "label_value_length",
                    f"label {name} {where} is {len(value)} characters long, more than "
                    f"the limit of {limits.label_value_length} (--push.max-label-value-length)",
                    400,
                )


def check_store(limits: Limits, groups_after: int, series_after: int) -> None:
    """The limits on what the store would hold after a push."""
    if limits.groups and groups_after > limits.groups:
        raise LimitExceeded(
            "groups",
            f"the store holds the limit of {limits.groups} groups (--store.max-groups); "
            "delete groups or let them expire",
            429,
        )
    if limits.series and series_after > limits.series:
        raise LimitExceeded(
            "series",
            f"the push would make the store hold {series_after} series, more than the limit of "
            f"{limits.series} (--store.max-series); delete groups or let them expire",
            429,
        )
