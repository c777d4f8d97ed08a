"""The HTTP API through a real pushgw process on 127.0.0.1."""

from __future__ import annotations

import base64
import gzip
import signal

import requests
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import delete_from_gateway, push_to_gateway, pushadd_to_gateway
from prometheus_client.parser import text_string_to_metric_families


def pushed_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of /metrics that came from pushes (own metrics and push times left out)."""
    body = requests.get(url + "/metrics", timeout=5).text
    result = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name.startswith(("process_", "python_", "pushgateway_", "push_")):
                continue
            result[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return result


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_push_scrape_delete_cycle(clean_pushgw):
    url = clean_pushgw.url
    r = requests.put(url + "/metrics/job/batch/instance/host1", data=b"# TYPE done counter\ndone 3\n")
    assert r.status_code == 200 and r.text == ""
    assert pushed_samples(url) == {("done_total", (("instance", "host1"), ("job", "batch"))): 3.0}
    r = requests.delete(url + "/metrics/job/batch/instance/host1")
    assert r.status_code == 202
    assert pushed_samples(url) == {}
    assert requests.delete(url + "/metrics/job/never").status_code == 202


def test_delete_of_job_leaves_groups_with_more_labels(clean_pushgw):
    url = clean_pushgw.url
    requests.put(url + "/metrics/job/x", data=b"a 1\n")
    requests.put(url + "/metrics/job/x/instance/y", data=b"b 1\n")
    requests.delete(url + "/metrics/job/x")
    assert set(pushed_samples(url)) == {("b", (("instance", "y"), ("job", "x")))}


def test_base64_percent_and_plus_in_grouping_key(clean_pushgw):
    url = clean_pushgw.url
    path = f"/metrics/job@base64/{b64('a/b')}/path@base64/{b64('/var/tmp')}=/empty@base64/=/p/a%20b+c"
    assert requests.put(url + path, data=b"m 1\n").status_code == 200
    labels = (("empty", ""), ("instance", ""), ("job", "a/b"), ("p", "a b+c"), ("path", "/var/tmp"))
    assert pushed_samples(url) == {("m", labels): 1.0}


def test_bad_requests_are_400_with_text_and_change_nothing(clean_pushgw):
    url = clean_pushgw.url
    requests.put(url + "/metrics/job/keep", data=b"k 1\n")
    before = pushed_samples(url)
    cases = [
        ("/metrics/job/j", b"m 1"),  # no final newline
        ("/metrics/job/j", b"m 1\r\n"),
        ("/metrics/job/j", b"m abc\n"),
        ("/metrics/job/j", b'm{a="\\q"} 1\n'),
        ("/metrics/job/j/a", b"m 1\n"),  # odd components
        ("/metrics/job/j/__a/b", b"m 1\n"),
        ("/metrics/job/j/a-b/c", b"m 1\n"),
        ("/metrics/job@base64/=", b"m 1\n"),
        ("/metrics/job@base64/!!", b"m 1\n"),
        ("/metrics/job/j/%FF/x", b"m 1\n"),
        ("/metrics/job/keep", b"k{x=\"1\"} 1\nk{x=\"1\"} 2\n"),  # duplicate series
        ("/metrics/job/keep", b"k 1 12345\n"),  # timestamp
    ]
    for path, body in cases:
        r = requests.put(url + path, data=body)
        assert r.status_code == 400, (path, body, r.status_code)
        assert r.headers["content-type"].startswith("text/plain") and r.text.strip(), (path, body)
    assert pushed_samples(url) == before


def test_inconsistent_push_sets_failure_time_and_last_push_successful(clean_pushgw):
    url = clean_pushgw.url
    requests.put(url + "/metrics/job/a", data=b"# TYPE m counter\nm 1\n")
    r = requests.put(url + "/metrics/job/b", data=b"# TYPE m gauge\nm 1\n")
    assert r.status_code == 400
    assert r.text.startswith("pushed metrics are invalid or inconsistent with existing metrics:")
    groups = {g["labels"]["job"]: g for g in requests.get(url + "/api/v1/metrics").json()["data"]}
    assert groups["a"]["last_push_successful"] is True
    assert groups["b"]["last_push_successful"] is False
    assert groups["b"]["push_time_seconds"]["metrics"][0]["value"] == "0"
    assert float(groups["b"]["push_failure_time_seconds"]["metrics"][0]["value"]) > 0


def test_gzip_push_and_gzip_scrape(clean_pushgw):
    url = clean_pushgw.url
    r = requests.put(
        url + "/metrics/job/z",
        data=gzip.compress(b"zipped 1\n"),
        headers={"Content-Encoding": "GZIP"},
    )
    assert r.status_code == 200
    r = requests.put(url + "/metrics/job/z", data=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    raw = requests.get(url + "/metrics", headers={"Accept-Encoding": "gzip"}, stream=True).raw.read()
    assert b"zipped{" in gzip.decompress(raw)


def test_methods_and_redirects(clean_pushgw):
    url = clean_pushgw.url
    assert requests.get(url + "/metrics/job/x").status_code == 405
    assert requests.patch(url + "/metrics/job/x").status_code == 405
    r = requests.put(url + "/metrics/job/", allow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (307, "/metrics/job")
    r = requests.put(url + "/metrics/job//instance/i", allow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (301, "/metrics/job/instance/i")
    assert requests.get(url + "/nope").status_code == 404


def test_health_ready_status_and_admin(clean_pushgw, make_pushgw):
    url = clean_pushgw.url
    assert requests.get(url + "/-/healthy").text == "OK"
    assert requests.get(url + "/-/ready").text == "OK"
    status = requests.get(url + "/api/v1/status").json()
    assert status["status"] == "success"
    assert status["data"]["flags"]["web.enable-admin-api"] == "true"
    assert status["data"]["flags"]["persistence.interval"] == "5m0s"
    requests.put(url + "/metrics/job/w", data=b"w 1\n")
    assert requests.put(url + "/api/v1/admin/wipe").status_code == 202
    assert requests.get(url + "/api/v1/metrics").json()["data"] == []
    assert requests.post(url + "/api/v1/admin/wipe").status_code == 405
    plain = make_pushgw()
    assert requests.put(plain.url + "/api/v1/admin/wipe").status_code == 404
    r = requests.put(plain.url + "/-/quit")
    assert (r.status_code, r.text) == (403, "Lifecycle API is not enabled.")
    r = requests.get(plain.url + "/-/quit")
    assert (r.status_code, r.text) == (405, "Only POST or PUT requests allowed.")


def test_quit_with_lifecycle_exits_zero(make_pushgw):
    server = make_pushgw("--web.enable-lifecycle")
    r = requests.post(server.url + "/-/quit")
    assert (r.status_code, r.text) == (200, "Requesting termination... Goodbye!")
    assert server.wait(10) == 0


def test_sigterm_is_a_graceful_exit(make_pushgw):
    server = make_pushgw()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait(10) == 0


def test_route_prefix_and_telemetry_path(make_pushgw):
    server = make_pushgw("--web.route-prefix=/pg", "--web.telemetry-path=/scrape")
    base = server.url
    assert requests.put(base + "/pg/metrics/job/p", data=b"p 1\n").status_code == 200
    assert "p{" in requests.get(base + "/pg/scrape").text
    assert requests.get(base + "/metrics").status_code == 404
    assert requests.get(base + "/pg/api/v1/metrics").json()["data"][0]["labels"] == {"job": "p"}
    assert requests.get(base + "/pg/-/healthy").status_code == 200


def test_disable_consistency_check_answers_202(make_pushgw):
    server = make_pushgw("--push.disable-consistency-check")
    assert requests.put(server.url + "/metrics/job/a", data=b"m 1\n").status_code == 202
    assert requests.put(server.url + "/metrics/job/b", data=b"m 1 123\n").status_code == 202
    assert requests.put(server.url + "/metrics/job/b", data=b"bad").status_code == 400


def test_unchecked_inconsistent_push_never_breaks_scrapes(make_pushgw):
    """The official answers 500 to every scrape after such a push; pushgw quarantines it."""
    server = make_pushgw("--push.disable-consistency-check")
    url = server.url
    requests.put(url + "/metrics/job/good", data=b"# TYPE t gauge\nt 1\nother 5\n")
    assert requests.put(url + "/metrics/job/bad", data=b"# TYPE t counter\nt 2\nextra 1\n").status_code == 202
    assert requests.put(url + "/metrics/job/dup", data=b"d 1\nd 2\n").status_code == 202
    r = requests.get(url + "/metrics")
    assert r.status_code == 200
    assert pushed_samples(url) == {
        ("t", (("instance", ""), ("job", "good"))): 1.0,
        ("other", (("instance", ""), ("job", "good"))): 5.0,
    }
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert families["pushgateway_inconsistent_groups"].samples[0].value == 2
    health = requests.get(url + "/-/healthy")
    assert health.status_code == 200 and health.text.startswith("OK")
    assert 'job="bad"' in health.text and 'job="dup"' in health.text
    api = {g["labels"]["job"]: g for g in requests.get(url + "/api/v1/metrics").json()["data"]}
    assert "extra" in api["bad"]  # still visible to operators
    assert "inconsistent push stored but kept out of /metrics" in server.output()
    requests.put(url + "/metrics/job/bad", data=b"# TYPE t gauge\nt 2\n")  # fixed push
    assert pushed_samples(url)[("t", (("instance", ""), ("job", "bad")))] == 2.0
    requests.delete(url + "/metrics/job/dup")
    assert requests.get(url + "/-/healthy").text == "OK"


def test_self_metrics_count_requests_and_store_size(clean_pushgw):
    url = clean_pushgw.url
    requests.put(url + "/metrics/job/s", data=b"a 1\nb 2\n")
    families = {f.name: f for f in text_string_to_metric_families(requests.get(url + "/metrics").text)}
    assert families["pushgateway_metric_groups"].samples[0].value == 1
    assert families["pushgateway_stored_series"].samples[0].value == 2
    codes = {
        (s.labels["handler"], s.labels["code"], s.labels["method"])
        for s in families["pushgateway_http_requests"].samples
    }
    assert ("push", "200", "put") in codes
    assert "pushgateway_build_info" in families
    assert "process_resident_memory_bytes" in families


def test_prometheus_client_push_functions_with_base64_grouping_key(clean_pushgw):
    address = clean_pushgw.url
    registry = CollectorRegistry()
    Counter("jobs_done", "Jobs done.", registry=registry).inc(3)
    Histogram("job_seconds", "Job time.", buckets=[1, 5], registry=registry).observe(2)
    grouping = {"path": "/var/tmp", "empty": ""}
    push_to_gateway(address, job="cleaner/daily", registry=registry, grouping_key=grouping)
    other = CollectorRegistry()
    Gauge("last_success", "Last success.", registry=other).set(1.5e9)
    pushadd_to_gateway(address, job="cleaner/daily", registry=other, grouping_key=grouping)
    samples = pushed_samples(address)
    key = (("empty", ""), ("instance", ""), ("job", "cleaner/daily"), ("path", "/var/tmp"))
    assert samples[("jobs_done_total", key)] == 3.0
    assert samples[("last_success", key)] == 1.5e9
    assert samples[("job_seconds_bucket", tuple(sorted(key + (("le", "5"),))))] == 1.0
    delete_from_gateway(address, job="cleaner/daily", grouping_key=grouping)
    assert pushed_samples(address) == {}


PROTO_CT = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"


def test_protobuf_push_and_every_scrape_format_agree(clean_pushgw):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families

    from pushgw.exposition.protobuf import encode_family, parse_delimited
    from pushgw.model import Metric, MetricFamily

    url = clean_pushgw.url
    body = encode_family(MetricFamily("pb_jobs_total", "counter", "Jobs.", [Metric({"kind": "a"}, 4.0)]))
    body += encode_family(MetricFamily("pb_temp", "gauge", "", [Metric({}, -1.5)]))
    assert requests.put(url + "/metrics/job/pb", data=body, headers={"Content-Type": PROTO_CT}).status_code == 200
    requests.put(url + "/metrics/job/txt", data=b"# TYPE plain counter\nplain 2\n# TYPE pb_temp gauge\npb_temp 3\n")
    bad = requests.put(url + "/metrics/job/pb", data=body[:-2], headers={"Content-Type": PROTO_CT})
    assert bad.status_code == 400 and bad.text.strip()

    text = pushed_samples(url)
    assert text[("pb_jobs_total", (("instance", ""), ("job", "pb"), ("kind", "a")))] == 4.0
    assert text[("pb_temp", (("instance", ""), ("job", "txt")))] == 3.0

    r = requests.get(url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert r.text.endswith("# EOF\n")
    om = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in om_families(r.text) for s in f.samples
        if not s.name.startswith(("process_", "python_", "pushgateway_", "push_"))
    }
    # The very same series names and values as the text format (prometheus-client's
    # text parser reports a counter without the _total suffix under name + "_total").
    text[("plain", (("instance", ""), ("job", "txt")))] = text.pop(("plain_total", (("instance", ""), ("job", "txt"))))
    assert om == text
    assert 'plain{instance="",job="txt"} 2\n' in r.text
    assert 'plain{instance="",job="txt"} 2\n' in requests.get(url + "/metrics").text

    r = requests.get(url + "/metrics", headers={"Accept": PROTO_CT, "Accept-Encoding": "gzip"})
    # The official's promhttp names the escaping of names too (prometheus/common's default).
    assert r.headers["content-type"] == PROTO_CT + "; escaping=underscores"
    assert r.headers["content-encoding"] == "gzip"
    families = parse_delimited(r.content)  # requests has already gunzipped it
    assert families["pb_temp"].type == "gauge" and len(families["pb_temp"].metrics) == 2
    assert families["plain"].metrics[0].labels == {"instance": "", "job": "txt"}
    assert families["pushgateway_build_info"].metrics[0].value == 1.0


def test_snappy_and_gzip_pushes_from_prometheus_client(clean_pushgw):
    address = clean_pushgw.url
    for compression in ("gzip", "snappy"):
        registry = CollectorRegistry()
        Gauge("zipped_" + compression, "Compressed.", registry=registry).set(7)
        push_to_gateway(address, job=compression, registry=registry, compression=compression)
        assert pushed_samples(address)[("zipped_" + compression, (("instance", ""), ("job", compression)))] == 7.0


def test_oversized_and_bomb_pushes_are_413(make_pushgw):
    import snappy

    server = make_pushgw("--push.max-body-size=128KiB", "--push.max-decompressed-size=1MiB")
    url = server.url
    requests.put(url + "/metrics/job/keep", data=b"keep 1\n")
    big = b"".join(b'm{i="%d"} 1\n' % i for i in range(20000))
    r = requests.put(url + "/metrics/job/big", data=big)
    assert r.status_code == 413 and "max-body-size" in r.text and "131072" in r.text
    bomb = b"# " + b"x" * (3 << 19) + b"\n"  # 1.5 MiB inflated
    for encoding, data in (("gzip", gzip.compress(bomb)), ("snappy", snappy.StreamCompressor().add_chunk(bomb))):
        assert len(data) < 128 * 1024
        r = requests.put(url + "/metrics/job/bomb", data=data, headers={"Content-Encoding": encoding})
        assert r.status_code == 413 and "max-decompressed-size" in r.text, encoding
    assert set(pushed_samples(url)) == {("keep", (("instance", ""), ("job", "keep")))}


def test_native_histogram_survives_a_restart_and_reaches_protobuf_scrapes(make_pushgw, tmp_path):
    from pushgw.exposition.protobuf import parse_delimited, pb

    histogram = pb.Histogram(
        sample_count=7, sample_sum=3.5, schema=0, zero_threshold=1e-128, zero_count=1,
        positive_span=[pb.BucketSpan(offset=0, length=2)], positive_delta=[2, 1],
        negative_span=[pb.BucketSpan(offset=0, length=1)], negative_delta=[1],
    )
    family = pb.MetricFamily(name="nh", type=pb.MetricType["HISTOGRAM"], metric=[pb.Metric(histogram=histogram)])
    data = family.SerializeToString()
    body = bytes([len(data)]) + data
    db = f"--persistence.file={tmp_path / 'pushgw.db'}"
    with make_pushgw(db) as server:
        assert requests.put(server.url + "/metrics/job/n", data=body, headers={"Content-Type": PROTO_CT}).status_code == 200
    server = make_pushgw(db)
    r = requests.get(server.url + "/metrics", headers={"Accept": PROTO_CT})
    (metric,) = parse_delimited(r.content)["nh"].metrics
    restored = pb.Histogram()
    restored.ParseFromString(metric.native)
    assert restored.positive_delta == [2, 1] and restored.zero_count == 1 and restored.schema == 0
    assert metric.labels == {"instance": "", "job": "n"}
    text = requests.get(server.url + "/metrics").text
    assert 'nh_count{instance="",job="n"} 7' in text and 'nh_bucket{instance="",job="n",le="+Inf"} 7' in text


def test_big_pushes_are_prepared_by_workers_with_the_same_answers(make_pushgw):
    """Bodies over 256 KiB go to worker processes: results and refusals must not change."""
    server = make_pushgw("--push.max-label-value-length=100")
    url = server.url
    body = b"".join(b'big_metric{i="%d",pad="%s"} %d\n' % (i, b"x" * 20, i) for i in range(20000))
    assert len(body) > 256 * 1024
    assert requests.put(url + "/metrics/job/big", data=body).status_code == 200
    samples = pushed_samples(url)
    assert len([k for k in samples if k[0] == "big_metric"]) == 20000
    assert samples[("big_metric", (("i", "19999"), ("instance", ""), ("job", "big"), ("pad", "x" * 20)))] == 19999
    zipped = gzip.compress(body.replace(b"big_metric", b"zipped_metric"))
    r = requests.put(url + "/metrics/job/zipped", data=zipped, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200
    for bad, status, phrase in [
        (body + b'x{a="' + b"y" * 200 + b'"} 1\n', 400, "--push.max-label-value-length"),
        (body + b"broken line\n", 400, "text format parsing error in line 20001"),
        (body + b"big_metric 1\nbig_metric 2\n", 400, "same name and label values"),
        (body.replace(b"big_metric", b"ts_metric") + b"ts_metric 1 123\n", 400, "timestamps"),
    ]:
        r = requests.put(url + "/metrics/job/bad", data=bad)
        assert (r.status_code, phrase in r.text) == (status, True), (r.status_code, r.text[:200])
    assert server.stop() == 0
