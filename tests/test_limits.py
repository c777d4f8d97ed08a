"""Limits, slow and broken clients, through a real pushgw process."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families


def refusals(url: str) -> dict[str, float]:
    body = requests.get(url + "/metrics").text
    for family in text_string_to_metric_families(body):
        if family.name == "pushgateway_push_refusals":
            return {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}
    return {}


def jobs(url: str) -> set[str]:
    return {g["labels"]["job"] for g in requests.get(url + "/api/v1/metrics").json()["data"]}


def test_push_and_store_limits(make_pushgw):
    server = make_pushgw(
        "--push.max-series-per-push=5", "--push.max-labels-per-series=3",
        "--push.max-label-value-length=10", "--store.max-groups=2", "--store.max-series=8",
    )
    url = server.url
    assert requests.put(url + "/metrics/job/a", data=b"a1 1\na2 1\na3 1\na4 1\n").status_code == 200
    cases = [
        ("/metrics/job/b", "".join(f"s{i} 1\n" for i in range(6)), 400, "limit of 5 (--push.max-series-per-push)"),
        ("/metrics/job/b", 'x{a="1",b="2",c="3",d="4"} 1\n', 400, "limit of 3 (--push.max-labels-per-series)"),
        ("/metrics/job/b", 'x{a="12345678901"} 1\n', 400, "limit of 10 (--push.max-label-value-length)"),
        ("/metrics/job/b", "b1 1\nb2 1\nb3 1\nb4 1\nb5 1\n", 429, "limit of 8 (--store.max-series)"),
    ]
    for path, body, status, phrase in cases:
        r = requests.put(url + path, data=body.encode())
        assert (r.status_code, phrase in r.text) == (status, True), (body, r.status_code, r.text)
    assert jobs(url) == {"a"}  # nothing was stored, not even a failure time
    assert requests.put(url + "/metrics/job/b", data=b"b1 1\nb2 1\nb3 1\nb4 1\n").status_code == 200
    r = requests.put(url + "/metrics/job/c", data=b"c 1\n")
    assert r.status_code == 429 and "limit of 2 groups (--store.max-groups)" in r.text
    # Replacing what a group holds is measured net of what it replaces.
    assert requests.put(url + "/metrics/job/a", data=b"n1 1\nn2 1\nn3 1\nn4 1\n").status_code == 200
    requests.delete(url + "/metrics/job/b")
    assert requests.put(url + "/metrics/job/c", data=b"c 1\n").status_code == 200
    counts = refusals(url)
    for reason in ("series_per_push", "labels_per_series", "label_value_length", "series", "groups"):
        assert counts.get(reason) == 1, (reason, counts)


def raw_request(port: int, head: bytes, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head + body)
    return sock


def read_response(sock: socket.socket) -> bytes:
    """Status line, headers and the Content-Length body of one response."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(
        (line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        b"0",
    ))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_slow_body_gets_408_and_changes_nothing(make_pushgw):
    server = make_pushgw("--web.read-timeout=1s")
    head = b"PUT /metrics/job/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    sock = raw_request(server.port, head, b"slow 1\n")
    started = time.monotonic()
    answer = read_response(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"--web.read-timeout" in answer
    assert 0.8 < time.monotonic() - started < 5
    assert jobs(server.url) == set()
    assert refusals(server.url).get("read_timeout") == 1


def test_client_disconnecting_mid_body_changes_nothing(make_pushgw):
    server = make_pushgw()
    requests.put(server.url + "/metrics/job/gone", data=b"before 1\n")
    head = b"PUT /metrics/job/gone HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    sock = raw_request(server.port, head, b"after 1\n")
    time.sleep(0.2)
    sock.close()
    deadline = time.monotonic() + 5
    while refusals(server.url).get("client_disconnected") != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert refusals(server.url).get("client_disconnected") == 1
    assert "before" in requests.get(server.url + "/metrics").text
    assert "after" not in requests.get(server.url + "/metrics").text
    assert requests.get(server.url + "/-/healthy").status_code == 200
    assert "Traceback" not in server.output()


def test_idle_keep_alive_connections_are_closed(make_pushgw):
    server = make_pushgw("--web.idle-timeout=1s")
    sock = raw_request(server.port, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n", b"")
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert sock.recv(4096) == b""  # closed by the server, not by the 10 s socket timeout
    assert time.monotonic() - started < 5
    sock.close()


def test_grouping_labels_count_toward_label_limits(make_pushgw):
    """Path labels are labels of every stored series: the per-series limits include them."""
    url = make_pushgw("--push.max-labels-per-series=4", "--push.max-label-value-length=10").url
    many = "".join(f"/l{i}/v" for i in range(5000))
    r = requests.put(url + "/metrics/job/j" + many, data=b"")  # even an empty body
    assert r.status_code == 400 and "grouping key (URL path) has 5001 labels" in r.text, r.text
    assert "limit of 4 (--push.max-labels-per-series)" in r.text
    # 2 series labels + 3 grouping labels (job, a, b) = 5 > 4; a label the path overrides counts once.
    r = requests.put(url + "/metrics/job/j/a/1/b/2", data=b'x{c="3",d="4"} 1\n')
    assert r.status_code == 400 and "series of x has 5 labels" in r.text, r.text
    assert requests.put(url + "/metrics/job/j/a/1/b/2", data=b'x{a="3",c="4"} 1\n').status_code == 200
    r = requests.put(url + "/metrics/job/j/a/12345678901", data=b"y 1\n")
    assert r.status_code == 400, r.text
    assert "label a in the grouping key (URL path) is 11 characters long" in r.text
    r = requests.put(url + "/metrics/job/123456789012", data=b"")
    assert r.status_code == 400 and "label job in the grouping key" in r.text, r.text
    assert jobs(url) == {"j"} and refusals(url)["labels_per_series"] == 2
    # DELETE is not limited (as in the official, deleting an absent group is 202): a key
    # over the limit matches no group pushed under it, and one stored before the limit
    # was lowered can still be deleted.
    assert requests.delete(url + "/metrics/job/j" + many).status_code == 202
    assert requests.delete(url + "/metrics/job/j/a/1/b/2").status_code == 202
    assert jobs(url) == set()


def _urllib_put(url: str, body: bytes) -> tuple[int, bytes]:
    """urllib writes the whole body before it reads the answer, as prometheus-client does."""
    request = urllib.request.Request(url, data=body, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_oversized_body_reaches_a_write_first_client_as_413(make_pushgw):
    server = make_pushgw("--push.max-body-size=1MiB", "--web.read-timeout=2s")
    url = server.url + "/metrics/job/huge"
    big = b"# " + b"x" * (73 * 1000 * 1000) + b"\n"  # 73 MB, announced by Content-Length
    for _ in range(2):  # the same connection pool, twice: no reset either time
        status, text = _urllib_put(url, big)
        assert status == 413, text
        assert b"request body exceeds the limit of 1048576 bytes (--push.max-body-size)" in text

    def chunks():  # no Content-Length: refused while reading
        for _ in range(20):
            yield b"# " + b"y" * (1 << 20) + b"\n"

    r = requests.put(url, data=chunks())
    assert r.status_code == 413 and "--push.max-body-size" in r.text
    assert jobs(server.url) == set() and refusals(server.url)["body_too_large"] == 3


@pytest.mark.parametrize("announced, sent, most_seconds", [
    (2_000_000, 100_000, 5.0),  # drained until --web.read-timeout (2s), then answered
    (10 ** 12, 100_000, 1.0),  # more than is ever drained: answered at once
])
def test_client_stalling_after_a_huge_content_length_is_let_go(make_pushgw, announced, sent, most_seconds):
    server = make_pushgw("--push.max-body-size=1MiB", "--web.read-timeout=2s")
    head = b"PUT /metrics/job/stall HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % announced
    started = time.monotonic()
    sock = raw_request(server.port, head, b"#" * sent)  # then nothing more
    answer = read_response(sock)
    elapsed = time.monotonic() - started
    assert sock.recv(1) == b""  # and the connection is closed
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413") and b"--push.max-body-size" in answer, answer
    assert elapsed < most_seconds
    assert requests.get(server.url + "/-/healthy").status_code == 200
