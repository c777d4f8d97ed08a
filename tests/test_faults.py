"""Fault and soak tests with real processes: kill -9 cycles, and a bounded soak.

Every loop is bounded in count and time and talks to 127.0.0.1 only.
PUSHGW_KILL_CYCLES and PUSHGW_SOAK_SECONDS make the runs longer outside CI.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time

import requests

from servers import start_pushgw

KILL_CYCLES = int(os.environ.get("PUSHGW_KILL_CYCLES", "100"))
SOAK_SECONDS = float(os.environ.get("PUSHGW_SOAK_SECONDS", "45"))


def stored_values(url: str) -> tuple[dict[str, float], set[str]]:
    """job -> value of its ``seq`` sample, and every family name stored."""
    result = {}
    names = set()
    for group in requests.get(url + "/api/v1/metrics", timeout=10).json()["data"]:
        names.update(group)
        if "seq" in group:
            result[group["labels"]["job"]] = float(group["seq"]["metrics"][0]["value"])
    return result, names


def test_kill_9_cycles_lose_no_acknowledged_push(tmp_path):
    """Concurrent pushers, kill -9 at a random moment, restart, verify: KILL_CYCLES times.

    Every acknowledged push must be there after the restart, and nothing refused.
    """
    db = tmp_path / "pushgw.db"
    rng = random.Random(7)
    acked: dict[str, int] = {}  # job -> newest acknowledged value, across all cycles
    refused: list[str] = []  # family names of pushes answered 400
    lock = threading.Lock()
    verified = 0
    deadline = time.monotonic() + 400
    gw = start_pushgw(f"--persistence.file={db}")
    for cycle in range(KILL_CYCLES):
        assert time.monotonic() < deadline, f"only {cycle} cycles within the time bound"
        stop = threading.Event()

        def pusher(worker: int) -> None:
            session = requests.Session()
            n = 0
            while not stop.is_set() and n < 200:
                n += 1
                job = f"w{worker}g{n % 7}"
                value = cycle * 1000 + n
                try:
                    r = session.put(f"{gw.url}/metrics/job/{job}", data=f"seq {value}\n".encode(), timeout=5)
                except requests.RequestException:
                    return
                if r.status_code == 200:
                    with lock:
                        acked[job] = value
                if n % 10 == 0:  # refused for its timestamp: must never show up
                    marker = f"refused_c{cycle}w{worker}n{n}"
                    try:
                        r = session.post(f"{gw.url}/metrics/job/{job}", data=f"{marker} 1 1000\n".encode(), timeout=5)
                    except requests.RequestException:
                        return
                    if r.status_code == 400:
                        with lock:
                            refused.append(marker)

        threads = [threading.Thread(target=pusher, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 0.3))
        gw.proc.kill()
        gw.wait(10)
        stop.set()
        for t in threads:
            t.join(10)
        gw.close()
        gw = start_pushgw(f"--persistence.file={db}")
        stored, names = stored_values(gw.url)
        assert not names & set(refused), names & set(refused)
        for job, value in acked.items():
            # The newest acknowledged push is there, or one sent after it that
            # was committed but not yet answered when the process died.
            assert stored.get(job, -1) >= value, (cycle, job, value, stored.get(job))
            verified += 1
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    gw.close()
    print(f"{KILL_CYCLES} kill -9 cycles, {verified} acknowledged pushes verified after restarts, "
          f"{len(refused)} refused pushes absent")
    assert verified >= KILL_CYCLES


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_soak_memory_and_file_descriptors_do_not_grow(tmp_path):
    """Rounds of pushes, deletes, TTL expiries and scrapes, each ending with an empty store.

    Python keeps freed memory for reuse rather than returning all of it, so the
    check is that the RSS after a round stops growing from round to round
    (a leak grows it every round), and that file descriptors return to the baseline.
    """
    with start_pushgw(f"--persistence.file={tmp_path / 'pushgw.db'}", "--web.enable-admin-api") as gw:
        url, pid = gw.url, gw.pid
        session = requests.Session()
        body = "".join(f'soak_metric{{i="{i}"}} {i}\n' for i in range(200)).encode()
        rounds: list[tuple[int, int]] = []
        started = time.monotonic()
        round_no = 0
        while time.monotonic() - started < SOAK_SECONDS or round_no < 4:
            round_no += 1
            for g in range(60):
                session.put(f"{url}/metrics/job/soak{g}", data=body)
                if g % 3 == 0:
                    session.get(url + "/metrics")
            for g in range(20):
                session.put(f"{url}/metrics/job/ttl{g}", data=body, headers={"Pushgateway-TTL": "1s"})
            for g in range(60):
                session.delete(f"{url}/metrics/job/soak{g}")
            time.sleep(1.3)  # the TTL groups expire
            session.get(url + "/metrics")
            assert requests.get(url + "/api/v1/metrics").json()["data"] == []
            rounds.append((rss_bytes(pid), fd_count(pid)))
            if round_no >= 40:
                break
        first_rss, first_fds = rounds[1]
        last_rss, last_fds = rounds[-1]
        print(f"soak: {round_no} rounds; RSS after round 2 {first_rss / 1e6:.1f} MB, "
              f"after the last {last_rss / 1e6:.1f} MB; fds {first_fds} -> {last_fds}")
        assert last_rss < first_rss * 1.10 + 4e6, rounds
        assert last_fds <= first_fds + 2, rounds
