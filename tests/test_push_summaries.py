"""The push duration and size summaries carry the official's quantiles (0.1, 0.5, 0.9)."""

from __future__ import annotations

import math
import random

import requests
from prometheus_client.parser import text_string_to_metric_families

from pushgw.summary import EXACT_BELOW, ExactWhileSmall

SUMMARIES = ("pushgateway_http_push_size_bytes", "pushgateway_http_push_duration_seconds")


def summary_samples(url: str, name: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one of the gateway's own summaries."""
    for family in text_string_to_metric_families(requests.get(url + "/metrics").text):
        if family.name == name:
            return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
                    if not s.name.endswith("_created")}
    return {}


def _push_known_sizes(url: str) -> None:
    """The same pushes, in the same order, over one connection: the same request sizes."""
    sizes = list(range(0, 2300, 100))
    random.Random(13).shuffle(sizes)
    with requests.Session() as session:
        for n in sizes:
            r = session.put(url + "/metrics/job/sizes", data=b"# " + b"x" * n + b"\nsize 1\n")
            assert r.status_code == 200, r.text
        for n in sizes[:5]:
            assert session.post(url + "/metrics/job/sizes", data=b"size 2\n" + b"\n" * n).status_code == 200


def test_size_quantiles_equal_the_officials_for_the_same_pushes(make_pushgw, make_official):
    ours_gw, official = make_pushgw(), make_official()  # fresh: no earlier pushes in the summaries
    for server in (ours_gw, official):
        _push_known_sizes(server.url)
    ours = summary_samples(ours_gw.url, SUMMARIES[0])
    theirs = summary_samples(official.url, SUMMARIES[0])
    quantiles = {key[1] for key in theirs if key[0] == SUMMARIES[0]}
    assert {dict(labels)["quantile"] for labels in quantiles} == {"0.1", "0.5", "0.9"}
    for method in ("put", "post"):
        mine = {k: v for k, v in ours.items() if ("method", method) in k[1]}
        official_method = {k: v for k, v in theirs.items() if ("method", method) in k[1]}
        assert mine == official_method and len(mine) == 5, (method, mine, official_method)
    # The durations have the same quantiles, with values of their own.
    durations = summary_samples(ours_gw.url, SUMMARIES[1])
    median = durations[(SUMMARIES[1], (("method", "put"), ("quantile", "0.5")))]
    assert 0 < median < 1


def test_estimator_is_exact_while_small_then_within_its_error():
    rng = random.Random(7)
    values = [rng.uniform(0, 1000) for _ in range(3 * EXACT_BELOW)]
    estimator = ExactWhileSmall((0.1, 0.01), (0.5, 0.05), (0.9, 0.01))
    assert math.isnan(estimator.query(0.5))
    for count, value in enumerate(values, 1):
        estimator.observe(value)
        if count in (1, 2, 7, EXACT_BELOW - 1):
            ordered = sorted(values[:count])
            assert estimator.query(0.5) == ordered[math.ceil(count * 0.5) - 1]
            assert estimator.query(0.9) == ordered[math.ceil(count * 0.9) - 1]
    ordered = sorted(values)
    for quantile, error in ((0.1, 0.01), (0.5, 0.05), (0.9, 0.01)):
        rank = ordered.index(estimator.query(quantile)) / len(values)
        assert abs(rank - quantile) <= error + 1 / len(values), (quantile, rank)
