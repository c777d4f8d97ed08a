"""Crash-safe SQLite persistence and TTL expiry, with real pushgw processes."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from servers import in_ci, start_pushgw

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def pushed_samples(url: str) -> Samples:
    body = requests.get(url + "/metrics", timeout=10).text
    result = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if not s.name.startswith(("process_", "python_", "pushgateway_")):
                result[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return result


def value_of(samples: Samples, name: str, **labels: str) -> float | None:
    labels.setdefault("instance", "")
    return samples.get((name, tuple(sorted(labels.items()))))


def jobs(url: str) -> set[str]:
    return {g["labels"]["job"] for g in requests.get(url + "/api/v1/metrics").json()["data"]}


def run_refusing(*args: str) -> subprocess.CompletedProcess[str]:
    """Run pushgw expecting it to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "pushgw", "--web.listen-address=127.0.0.1:0", *args],
        capture_output=True, text=True, timeout=30,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_restart_after_sigterm_restores_everything(tmp_path):
    db = f"--persistence.file={tmp_path / 'pushgw.db'}"
    with start_pushgw(db, "--web.enable-admin-api") as gw:
        url = gw.url
        requests.put(url + "/metrics/job/a/instance/x", data=(
            "# HELP req Requests.\n# TYPE req counter\nreq{code=\"200\"} 5\nreq{code=\"500\"} 1e+06\n"
            "# TYPE lat histogram\nlat_bucket{le=\"0.5\"} 2\nlat_bucket{le=\"+Inf\"} 3\n"
            "lat_sum 1.25\nlat_count 3\n"
            "# TYPE q summary\nq{quantile=\"0.9\"} NaN\nq_sum 0\nq_count 0\n"
        ).encode())
        requests.post(url + "/metrics/job/a/instance/x", data=b"extra -Inf\n")
        requests.put(url + "/metrics/job@base64/c2xhc2gvam9i/path@base64/=", data=b"g 0.1\n")
        requests.put(url + "/metrics/job/b", data=b"# TYPE req gauge\nreq 1\n")  # refused: type
        requests.put(url + "/metrics/job/gone", data=b"x 1\n")
        requests.delete(url + "/metrics/job/gone")
        before = requests.get(url + "/api/v1/metrics").json()["data"]
        body_before = pushed_samples(url)
        assert gw.stop() == 0
    with start_pushgw(db) as gw:
        after = requests.get(gw.url + "/api/v1/metrics").json()["data"]
        body_after = pushed_samples(gw.url)
    key = lambda g: sorted(g["labels"].items())  # noqa: E731
    assert sorted(after, key=key) == sorted(before, key=key)
    assert set(body_after) == set(body_before)
    for series, value in body_before.items():
        assert body_after[series] == value or (value != value and body_after[series] != body_after[series])
    assert {g["labels"]["job"] for g in after} == {"a", "slash/job", "b"}
    failed = next(g for g in after if g["labels"]["job"] == "b")
    assert failed["last_push_successful"] is False


def test_ttl_expires_on_time_across_scrapes_sweeps_and_restarts(tmp_path):
    db = f"--persistence.file={tmp_path / 'pushgw.db'}"
    with start_pushgw(db, "--metric.timetolive=2s") as gw:
        url = gw.url
        assert requests.put(url + "/metrics/job/default", data=b"a 1\n").status_code == 200
        r = requests.put(url + "/metrics/job/short", data=b"b 1\n", headers={"Pushgateway-TTL": "1s"})
        assert r.status_code == 200
        r = requests.put(url + "/metrics/job/forever", data=b"c 1\n", headers={"Pushgateway-TTL": "0"})
        assert r.status_code == 200
        r = requests.put(url + "/metrics/job/restart", data=b"d 1\n", headers={"pushgateway-ttl": "3s"})
        assert r.status_code == 200
        for bad in ("abc", "-5s", "1x", ""):
            r = requests.put(url + "/metrics/job/bad", data=b"e 1\n", headers={"Pushgateway-TTL": bad})
            assert r.status_code == 400 and "Pushgateway-TTL" in r.text, bad
        groups = {g["labels"]["job"]: g for g in requests.get(url + "/api/v1/metrics").json()["data"]}
        assert groups["short"]["ttl_seconds"] == 1.0 and "expires_at" in groups["short"]
        assert "ttl_seconds" not in groups["forever"]
        assert jobs(url) == {"default", "short", "forever", "restart"}
        time.sleep(1.2)  # no sweep may have run yet: the scrape itself must not show "short"
        assert value_of(pushed_samples(url), "b", job="short") is None
        assert jobs(url) == {"default", "forever", "restart"}
        time.sleep(1.0)
        assert jobs(url) == {"forever", "restart"}
        # A re-push restarts the clock.
        time.sleep(0.5)
        requests.post(url + "/metrics/job/restart", data=b"d 2\n", headers={"Pushgateway-TTL": "3s"})
        expired = [s for s in text_string_to_metric_families(requests.get(url + "/metrics").text)
                   if s.name == "pushgateway_groups_expired"]
        assert expired[0].samples[0].value == 2
    time.sleep(3.2)  # "restart" expires while the gateway is down
    with start_pushgw(db) as gw:
        assert jobs(gw.url) == {"forever"}
    conn = sqlite3.connect(tmp_path / "pushgw.db")
    assert [r[0] for r in conn.execute("SELECT grouping FROM groups")] == ['[["job","forever"]]']
    conn.close()


def test_background_sweep_removes_expired_groups_from_the_database(tmp_path):
    path = tmp_path / "pushgw.db"
    with start_pushgw(f"--persistence.file={path}") as gw:
        requests.put(gw.url + "/metrics/job/x", data=b"a 1\n", headers={"Pushgateway-TTL": "1s"})
        deadline = time.monotonic() + 5
        count = 1
        while time.monotonic() < deadline and count:
            time.sleep(0.2)
            conn = sqlite3.connect(path)
            count = conn.execute("SELECT count(*) FROM groups").fetchone()[0]
            conn.close()
        assert count == 0  # no scrape ran: the sweep did it


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x0e\xff\x81\x03\x01\x01\x18GroupingKeyToMetricGroup\x01\xff\x82", "not a pushgw database"),
        (b"SQLite format 3\x00" + b"\x00" * 84 + b"garbage" * 200, "corrupt"),
    ],
    ids=["official-persistence-file", "corrupt-sqlite"],
)
def test_foreign_or_corrupt_file_refuses_start_and_is_untouched(tmp_path, content, message):
    path = tmp_path / "pushgateway.data"
    path.write_bytes(content)
    digest = sha256(path)
    result = run_refusing(f"--persistence.file={path}")
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert sha256(path) == digest
    assert sorted(os.listdir(tmp_path)) == ["pushgateway.data"]


def test_other_application_and_newer_schema_refused(tmp_path):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    digest = sha256(other)
    result = run_refusing(f"--persistence.file={other}")
    assert result.returncode != 0 and "another application" in result.stderr
    assert sha256(other) == digest

    newer = tmp_path / "newer.db"
    with start_pushgw(f"--persistence.file={newer}"):
        pass
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    digest = sha256(newer)
    result = run_refusing(f"--persistence.file={newer}")
    assert result.returncode != 0 and "newer" in result.stderr
    assert sha256(newer) == digest


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, so the test can fill it up and make it read-only."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if in_ci():
            pytest.fail("the disk-failure test needs root (mount) under CI")
        pytest.skip("DISK TEST SKIPPED: needs root to mount a small tmpfs")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_then_read_only_disk_gives_5xx_and_recovers(small_disk):
    db = small_disk / "pushgw.db"
    with start_pushgw(f"--persistence.file={db}") as gw:
        url = gw.url
        assert requests.put(url + "/metrics/job/kept", data=b"kept 1\n").status_code == 200
        filler = small_disk / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        big = "".join(f'big{{i="{i}"}} {i}\n' for i in range(20000)).encode()
        statuses = [requests.put(url + f"/metrics/job/full{i}", data=big).status_code for i in range(3)]
        assert 503 in statuses
        r = requests.put(url + "/metrics/job/full9", data=big)
        assert r.status_code == 503 and "could not persist" in r.text
        assert gw.alive()
        health = requests.get(url + "/-/healthy")
        assert health.status_code == 500 and "persistence" in health.text
        assert "full9" not in jobs(url)  # memory was not changed by the refused push
        assert value_of(pushed_samples(url), "kept", job="kept") == 1.0
        filler.unlink()
        deadline = time.monotonic() + 10
        while requests.get(url + "/-/healthy").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert requests.get(url + "/-/healthy").status_code == 200
        assert requests.put(url + "/metrics/job/after", data=b"after 1\n").status_code == 200

    with start_pushgw(f"--persistence.file={db}") as gw:
        assert jobs(gw.url) == {"kept", "after"}


def test_removed_database_file_is_noticed_and_rewritten(tmp_path):
    """SQLite would keep writing to the deleted file; pushgw refuses, then writes a new one."""
    db = tmp_path / "pushgw.db"
    with start_pushgw(f"--persistence.file={db}") as gw:
        url = gw.url
        assert requests.put(url + "/metrics/job/kept", data=b"kept 1\n").status_code == 200
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        r = requests.put(url + "/metrics/job/lost", data=b"lost 1\n")
        assert r.status_code == 503 and "removed" in r.text
        assert "lost" not in jobs(url)
        assert "removed" in requests.get(url + "/-/healthy").text
        deadline = time.monotonic() + 10
        while requests.get(url + "/-/healthy").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert requests.get(url + "/-/healthy").status_code == 200
        assert requests.put(url + "/metrics/job/after", data=b"after 1\n").status_code == 200
        assert db.exists()
    with start_pushgw(f"--persistence.file={db}") as gw:
        assert {"kept", "after"} <= jobs(gw.url)


def test_ready_is_503_while_restoring_and_healthy_is_200(tmp_path):
    db = tmp_path / "pushgw.db"
    with start_pushgw(f"--persistence.file={db}") as gw:
        body = "".join(f'm{{i="{i}"}} {i}\n' for i in range(2000)).encode()
        for g in range(150):
            requests.put(f"{gw.url}/metrics/job/g{g}", data=body)
    from servers import ServerProcess, free_port

    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "pushgw", f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={db}"],
        port, name="pushgw", ready_path="/-/healthy",
    )
    with server:
        ready = requests.get(server.url + "/-/ready")
        if ready.status_code == 503:  # caught mid-restore
            assert requests.get(server.url + "/-/healthy").status_code == 200
        deadline = time.monotonic() + 60
        while requests.get(server.url + "/-/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(jobs(server.url)) == 150
    assert ready.status_code in (200, 503)


def test_quarantined_push_stays_quarantined_after_restart(tmp_path):
    db = f"--persistence.file={tmp_path / 'pushgw.db'}"
    flags = (db, "--push.disable-consistency-check")
    with start_pushgw(*flags) as gw:
        requests.put(gw.url + "/metrics/job/good", data=b"# TYPE t gauge\nt 1\n")
        assert requests.put(gw.url + "/metrics/job/bad", data=b"# TYPE t counter\nt 2\n").status_code == 202
    with start_pushgw(*flags) as gw:
        assert set(pushed_samples(gw.url)) == {
            ("t", (("instance", ""), ("job", "good"))),
            ("push_time_seconds", (("instance", ""), ("job", "bad"))),
            ("push_time_seconds", (("instance", ""), ("job", "good"))),
            ("push_failure_time_seconds", (("instance", ""), ("job", "bad"))),
            ("push_failure_time_seconds", (("instance", ""), ("job", "good"))),
        }
        assert 'job="bad"' in requests.get(gw.url + "/-/healthy").text
        api = {g["labels"]["job"]: g for g in requests.get(gw.url + "/api/v1/metrics").json()["data"]}
        assert api["bad"]["t"]["type"] == "COUNTER"
