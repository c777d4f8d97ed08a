"""``/api/v1/metrics`` shows native histograms as bucket lists, as official releases since 1.10 do.

Each bucket is ``[boundary_rule, lower, upper, count]`` (Prometheus' query API
shape). The Debian official binary (1.5.1) predates this and shows ``{}``, so
the expected answers here are worked out by hand from the bucket layout
(schema s: bucket i is (2**(i/2**s-1)*2, ...]) and agree with the official's
own api_test.go for the histogram it uses there (the first case).
"""

from __future__ import annotations

import requests
from google.protobuf.internal.encoder import _VarintBytes

from pushgw.exposition.protobuf import pb

PROTO_CT = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
Span = pb.BucketSpan


def _push(url: str, job: str, histograms: list) -> dict:
    metrics = [pb.Metric(label=[pb.LabelPair(name="case", value=str(i))], histogram=h)
               for i, h in enumerate(histograms)]
    data = pb.MetricFamily(name="nh", type=pb.MetricType["HISTOGRAM"], metric=metrics).SerializeToString()
    body = _VarintBytes(len(data)) + data
    r = requests.put(f"{url}/metrics/job/{job}", data=body, headers={"Content-Type": PROTO_CT})
    assert r.status_code == 200, r.text
    (group,) = [g for g in requests.get(url + "/api/v1/metrics").json()["data"] if g["labels"]["job"] == job]
    return {m["labels"]["case"]: (m["buckets"], m["count"], m["sum"]) for m in group["nh"]["metrics"]}


def test_native_histogram_buckets_are_listed_like_the_official(clean_pushgw):
    two_spans = [Span(offset=0, length=2), Span(offset=0, length=2)]
    shown = _push(clean_pushgw.url, "native", [
        # Integer counts as deltas, schema 1 (bounds are powers of sqrt 2): zero counts left out,
        # negative buckets from the most negative up.
        pb.Histogram(sample_count=20, sample_sum=99.23, schema=1, negative_span=two_spans,
                     negative_delta=[0, 2, -2, 0], positive_span=two_spans, positive_delta=[0, 2, -2, 0]),
        # Float counts (absolute), in the same layout: a negative count is shown as it is.
        pb.Histogram(sample_count_float=20, sample_sum=99.23, schema=1, negative_span=two_spans,
                     negative_count=[2, 2, -2, 0], positive_span=two_spans, positive_count=[2, 2, -2, 0]),
        # Schema 0 (powers of 2), a zero bucket, a negative first offset and a gap between spans.
        pb.Histogram(sample_count=6, sample_sum=1.5, schema=0, zero_threshold=0.001, zero_count=3,
                     positive_span=[Span(offset=-2, length=1), Span(offset=1, length=2)],
                     positive_delta=[1, 1, -2]),
        # Schema -1 (powers of 4), float zero bucket with Prometheus' default threshold.
        pb.Histogram(sample_count_float=4.25, sample_sum=-2.5, schema=-1, zero_threshold=2.938735877055719e-39,
                     zero_count_float=0.5, negative_span=[Span(offset=1, length=1)], negative_count=[1.5],
                     positive_span=[Span(offset=2, length=1)], positive_count=[2.25]),
        # Native fields but no spans: the official shows the classic (empty) map.
        pb.Histogram(sample_count=2, sample_sum=0.0, schema=3, zero_threshold=0.001, zero_count=2),
    ])
    r2 = "1.414213562373095"  # Prometheus' bound, one ulp below the rounded sqrt(2)
    assert shown["0"] == ([[1, "-" + r2, "-1", "2"], [0, "1", r2, "2"]], "20", "99.23")
    assert shown["1"] == ([
        [1, "-2", "-" + r2, "-2"], [1, "-" + r2, "-1", "2"], [1, "-1", "-0.7071067811865475", "2"],
        [0, "0.7071067811865475", "1", "2"], [0, "1", r2, "2"], [0, r2, "2", "-2"],
    ], "20", "99.23")
    assert shown["2"] == ([[3, "-0.001", "0.001", "3"], [0, "0.125", "0.25", "1"], [0, "0.5", "1", "2"]],
                          "6", "1.5")
    assert shown["3"] == ([
        [1, "-4", "-1", "1.5"], [3, "-2.938735877055719e-39", "2.938735877055719e-39", "0.5"],
        [0, "4", "16", "2.25"],
    ], "4.25", "-2.5")
    assert shown["4"] == ({}, "2", "0")


def test_classic_histograms_keep_the_map(clean_pushgw):
    url = clean_pushgw.url
    body = b'c_bucket{le="0.5"} 1\nc_bucket{le="+Inf"} 3\nc_sum 2.5\nc_count 3\n# TYPE c histogram\n'
    body = b"# TYPE c histogram\n" + body.replace(b"# TYPE c histogram\n", b"")
    assert requests.put(url + "/metrics/job/classic", data=body).status_code == 200
    (group,) = requests.get(url + "/api/v1/metrics").json()["data"]
    (metric,) = group["c"]["metrics"]
    assert (metric["buckets"], metric["count"]) == ({"0.5": "1", "+Inf": "3"}, "3")
