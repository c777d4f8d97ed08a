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


def check_push(limits: Limits, families: Iterable[MetricFamily]) -> None:
    """The limits on what one push carries (grouping labels included later do not count)."""
    series = 0
    for family in families:
        series += len(family.metrics)
        for metric in family.metrics:
            if limits.labels_per_series and len(metric.labels) > limits.labels_per_series:
                raise LimitExceeded(
                    "labels_per_series",
                    f"series of {family.name} has {len(metric.labels)} labels, more than the limit of "
                    f"{limits.labels_per_series} (--push.max-labels-per-series)",
                    400,
                )
            if limits.label_value_length:
                for name, value in metric.labels.items():
                    if len(value) > limits.label_value_length:
                        raise LimitExceeded(
                            "label_value_length",
                            f"label {name} of {family.name} is {len(value)} characters long, more than "
                            f"the limit of {limits.label_value_length} (--push.max-label-value-length)",
                            400,
                        )
    if limits.series_per_push and series > limits.series_per_push:
        raise LimitExceeded(
            "series_per_push",
            f"push has {series} series, more than the limit of {limits.series_per_push} "
            "(--push.max-series-per-push)",
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
