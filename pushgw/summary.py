"""Summaries with quantiles over a sliding window, as client_golang's (the official's own metrics).

prometheus-client's Summary has no quantiles. prometheus-summary adds them on
top of it: a ring of CKMS estimators (quantile-estimator) over ``max_age``
seconds in ``age_buckets`` steps, client_golang's design, with its defaults
of 10 minutes and 5 buckets. One difference matters for small counts:
client_golang's streams (beorn7/perks) answer exactly from the raw
observations until 500 have arrived, while the estimator always answers
from its compressed summary, which for a few dozen pushes often picks a
neighbouring value. ``ExactWhileSmall`` keeps the raw observations until
then, so a gateway that saw the same pushes shows the same quantiles.
"""

from __future__ import annotations

import math

import prometheus_summary
from prometheus_client import CollectorRegistry
from quantile_estimator import Estimator, TimeWindowEstimator

# The official's objectives for its push duration and size: quantile -> allowed error.
OBJECTIVES = ((0.1, 0.01), (0.5, 0.05), (0.9, 0.01))
MAX_AGE_SECONDS = 600
AGE_BUCKETS = 5
EXACT_BELOW = 500  # observations a perks stream keeps raw before its first flush


class ExactWhileSmall(Estimator):
    """The raw observations, sorted on query, until EXACT_BELOW; then the CKMS estimator."""

    def __init__(self, *invariants: tuple[float, float]) -> None:
        super().__init__(*invariants)
        self._raw: list[float] | None = []

    def observe(self, value: float) -> None:
        raw = self._raw
        if raw is None:
            super().observe(value)
            return
        raw.append(value)
        if len(raw) >= EXACT_BELOW:
            self._raw = None
            for kept in raw:
                super().observe(kept)

    def query(self, rank: float) -> float:
        raw = self._raw
        if raw is None:
            return super().query(rank)
        if not raw:
            return math.nan
        raw.sort()
        return raw[max(math.ceil(len(raw) * rank) - 1, 0)]


class _Window(TimeWindowEstimator):
    def get_new_bucket(self) -> Estimator:
        return ExactWhileSmall(*self.invariants)


class Summary(prometheus_summary.Summary):
    """A labelled summary with the official's quantiles (0.1, 0.5, 0.9) over a 10-minute window."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = (),
                 registry: CollectorRegistry | None = None, **kwargs) -> None:  # noqa: ANN003
        kwargs.setdefault("invariants", OBJECTIVES)
        kwargs.setdefault("max_age_seconds", MAX_AGE_SECONDS)
        kwargs.setdefault("age_buckets", AGE_BUCKETS)
        super().__init__(name, documentation, labelnames, registry=registry, **kwargs)

    def _metric_init(self) -> None:
        super()._metric_init()
        self._estimator = _Window(*self._invariants, max_age_seconds=self._max_age_seconds,
                                  age_buckets=self._age_buckets)
