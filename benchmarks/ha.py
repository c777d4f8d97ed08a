"""pushgw replicas on one PostgreSQL against single-node SQLite and the official (issue 12).

    .venv/bin/python benchmarks/ha.py            # full mode: 1M series, several minutes
    .venv/bin/python benchmarks/ha.py --quick    # small sizes, under a minute (the smoke test)

Everything runs on this machine: a throwaway PostgreSQL (tests/postgres.py),
the pushgw replicas, single-node pushgw with --persistence.file, the official
binary, and wrk. Measured:

* pushes/s and p99 of bench.py's (a)/(h) load (10-series PUTs round-robin to
  the push groups) on SQLite, the official, and 1, 2 and 3 replicas; for
  replicas, wrk runs one thread per replica (lua/push_groups_spread.lua), so
  the load is spread round-robin and counted as one;
* replication lag: A takes pushes at a steady rate while nobody reads B;
  B's ``pushgateway_replication_lag_seconds`` histogram (from the commit on A
  until B applied it, by B's follower) gives p50/p99. Reading B's /metrics
  would catch B up first, so B is read once, after the run;
* read cost at 100k series: a small ``/api/v1/metrics?match[]=`` read on a
  replica (which first asks PostgreSQL for the newest log position) and on
  single-node SQLite holding the same state, alternately, nothing changing;
* readiness: a new replica started on a database holding 100k / 1M series,
  start to /-/ready, beside a single-node SQLite restart on the same state.

Every load ends with a scrape check of every replica (payloads.py), and every
new replica's store is checked whole. Exit code 1 when a check fails
(a missed target does not fail the run).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "tests"))  # the PostgreSQL fixture

import gateways  # noqa: E402
import loadgen  # noqa: E402
import payloads as pl  # noqa: E402
from bench import (bulk_pushes, describe_tree, finish, fmt_n, log, percentile, put_all, scrape,  # noqa: E402
                   wait_complete)
from gateways import Gateway, cpu_seconds  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    rounds: int  # push rounds per configuration (median)
    push_groups: int  # groups of 10 series, the (a)/(h) store
    push_seconds: int
    connections: int  # wrk connections in total (divisible by 1, 2 and 3)
    lag_seconds: float
    lag_rate: int  # pushes/s on A while B follows
    read_store: int  # series stored for the read cost
    reads: int  # timed reads per gateway
    ready_stores: tuple[int, ...]
    per_group: int = 1000  # series per bulk group of the stored state


MODES = {
    "full": Sizes(3, 1000, 4, 12, 10.0, 200, 100_000, 400, (100_000, 1_000_000)),
    "quick": Sizes(1, 100, 1, 6, 2.0, 200, 10_000, 60, (10_000,)),
}
LAG_P99_MAX = 0.050  # seconds
CATCH_UP_MAX = 0.002  # seconds added to a read
READY_RATIO_MAX = 2.0
READ_PATH = "/api/v1/metrics?match[]=%7Bjob%3D%22benchread%22%7D"  # {job="benchread"}


@dataclass
class Results:
    lines: list[tuple[str, str, str, str]] = field(default_factory=list)  # label, value, target, result
    problems: list[str] = field(default_factory=list)
    checks: int = 0
    push: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # config -> (rate, p99 ms)

    def verify(self, what: str, body: bytes, want: pl.Expectation, extra: list[str] = ()) -> None:
        self.checks += 1
        problems = list(extra) + pl.check(body, want)
        if problems:
            self.problems += [f"{what}: {p}" for p in problems]
            log(f"    CHECK FAILED {what}: {problems[0]}")

    def line(self, label: str, value: str, target: str = "-", ok: bool | None = None) -> None:
        result = "" if ok is None else "PASS" if ok else "FAIL"
        self.lines.append((label, value, target, result))


# --- PostgreSQL ---------------------------------------------------------------------------


def start_database():
    """A throwaway PostgreSQL server (tests/postgres.py), or None with the reason printed."""
    import postgres  # tests/postgres.py; imports pytest for its skips

    if postgres.postgres_bindir() is None:
        log("PostgreSQL is not installed (apt-get install postgresql): nothing to measure")
        return None
    return postgres.start_postgres()


def replicas(url: str, n: int, extra: list[str] = ()) -> list[Gateway]:
    return [gateways.start("pushgw", [f"--persistence.url={url}", *extra]) for _ in range(n)]


# --- pushes/s -------------------------------------------------------------------------------


def push_load(gws: list[Gateway], want: pl.Expectation, sizes: Sizes) -> loadgen.LoadResult:
    """wrk with one thread per gateway (lua/push_groups_spread.lua), the groups round-robin."""
    n = len(gws)
    argv = ["wrk", f"-t{n}", f"-c{sizes.connections}", f"-d{sizes.push_seconds}s", "--timeout", "60s",
            "-s", str(loadgen.LUA / "push_groups_spread.lua"), gws[0].url, "--",
            str(want.push_groups), str(want.push_series), str(want.token), "PUT", str(n)]
    os.environ["BENCH_PORTS"] = ",".join(str(gw.port) for gw in gws)
    try:
        return loadgen.parse_result(loadgen.run_child(argv, timeout=sizes.push_seconds + 90))
    finally:
        del os.environ["BENCH_PORTS"]


def push_config(res: Results, name: str, gws: list[Gateway], sizes: Sizes) -> None:
    """Build the push groups, then ``rounds`` loads; every gateway's scrape is checked after each."""
    want = pl.Expectation(push_groups=sizes.push_groups)
    put_all(gws[0], [(pl.push_path(g), pl.push_body(0, g, 10)) for g in range(sizes.push_groups)])
    for _ in range(sizes.rounds):
        want.token += 1
        cpu0 = sum(cpu_seconds(gw.pid) for gw in gws)
        r = push_load(gws, want, sizes)
        cpu = sum(cpu_seconds(gw.pid) for gw in gws) - cpu0
        want.must_have_token = max(0, min(want.push_groups, r.requests) - sizes.connections)
        errors = [f"{k} errors: {v}" for k, v in r.errors.items() if v] + ([] if r.requests else ["no push"])
        for i, gw in enumerate(gws):
            res.verify(f"push {name} [scrape of gateway {i + 1}]", scrape(gw), want, errors)
        res.push.setdefault(name, []).append((r.rate, r.p99_ms))
        log(f"    {name:22s} {r.rate:8.0f} pushes/s  p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms"
            f"  cpu servers {cpu:.1f}s wrk {r.gen_cpu:.1f}s wall {r.seconds:.1f}s")


def run_pushes(res: Results, sizes: Sizes, pg, tmp: Path) -> None:
    configs: list[tuple[str, Callable[[], list[Gateway]]]] = [
        ("pushgw SQLite", lambda: [gateways.start("pushgw", [f"--persistence.file={tmp / 'push.db'}"])]),
    ]
    if gateways.official_binary():
        configs.append(("official (file)", lambda: [gateways.start("official",
                                                                   [f"--persistence.file={tmp / 'off.db'}"])]))
    for n in (1, 2, 3):
        configs.append((f"pushgw {n} replica{'s' if n > 1 else ''}",
                        lambda n=n: replicas(pg.create_database(), n)))
    lag_lines = []
    for name, start in configs:
        gws = start()
        try:
            push_config(res, name, gws, sizes)
            if len(gws) == 3:
                lag_lines = run_lag(res, sizes, gws)
        finally:
            for gw in gws:
                gateways.stop(gw, timeout=60)
    base = statistics.median(r for r, _ in res.push["pushgw SQLite"])
    for name in res.push:
        rate = statistics.median(r for r, _ in res.push[name])
        p99 = statistics.median(p for _, p in res.push[name])
        target, ok = "-", None
        if name == "pushgw 3 replicas":
            target, ok = f">= SQLite ({base:,.0f}/s)", rate >= base
        res.line(f"push 10 series to {sizes.push_groups} groups: {name}",
                 f"{rate:,.0f}/s  p99 {p99:.1f} ms", target, ok)
    for line in lag_lines:
        res.line(*line)


# --- replication lag --------------------------------------------------------------------------


def lag_buckets(gw: Gateway) -> dict[float, float]:
    """B's cumulative lag histogram buckets (le -> count) from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[float, float] = {}
    for family in text_string_to_metric_families(scrape(gw).decode()):
        if family.name == "pushgateway_replication_lag_seconds":
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    out[float(s.labels["le"])] = s.value
    return out


def quantile(q: float, buckets: dict[float, float]) -> float:
    """histogram_quantile() as Prometheus computes it: linear within the bucket."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le in bounds:
        if buckets[le] >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(buckets[le] - below, 1e-9)
        lower, below = le, buckets[le]
    return lower


def run_lag(res: Results, sizes: Sizes, gws: list[Gateway]) -> list[tuple]:
    """Steady pushes on A; B and C follow unread; then their lag histograms (minus before).

    Returns the table lines (they follow the push lines)."""
    a, followers = gws[0], gws[1:]
    before = [lag_buckets(gw) for gw in followers]
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    interval, sent, acks = 1.0 / sizes.lag_rate, 0, []
    t0 = time.monotonic()
    while time.monotonic() - t0 < sizes.lag_seconds:
        due = t0 + sent * interval
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        g = sent % sizes.push_groups
        started = time.perf_counter()
        conn.request("PUT", pl.push_path(g), body=pl.push_body(100 + sent // sizes.push_groups, g, 10))
        resp = conn.getresponse()
        resp.read()
        acks.append(time.perf_counter() - started)
        if resp.status != 200:
            res.problems.append(f"lag: push answered {resp.status}")
        sent += 1
    elapsed = time.monotonic() - t0
    conn.close()
    time.sleep(0.5)  # the followers apply the last pushes before their /metrics is read
    counts = []
    for i, (gw, old) in enumerate(zip(followers, before)):
        new = lag_buckets(gw)
        delta = {le: new[le] - old.get(le, 0.0) for le in new}
        counts.append(delta)
        log(f"    lag on replica {i + 2}: {int(delta[float('inf')])} catch-ups, p50 {1e3 * quantile(0.5, delta):.1f} ms"
            f"  p99 {1e3 * quantile(0.99, delta):.1f} ms")
    merged = {le: sum(d[le] for d in counts) for le in counts[0]}
    p50, p99 = quantile(0.5, merged), quantile(0.99, merged)
    log(f"    A took {sent} pushes in {elapsed:.1f}s ({sent / elapsed:.0f}/s), ack p99 {1e3 * percentile(acks, 99):.1f} ms")
    applied = int(merged[float("inf")])
    seen, took = read_after_write(res, a, followers[0], sizes.push_groups, min(sent, 200))
    return [(f"replication lag at {sent / elapsed:.0f} pushes/s on A, p50 / p99 ({applied} applies"
             f" on {len(followers)} followers)",
             f"{1e3 * p50:.1f} / {1e3 * p99:.1f} ms", f"p99 <= {1e3 * LAG_P99_MAX:.0f} ms", p99 <= LAG_P99_MAX),
            ("push on A, then read on B (catch-up): push seen / B's read median",
             f"{seen} / {took}", "all seen", seen.split(" of ")[0] == seen.split(" of ")[1])]


def shown_value(api_body: bytes) -> float | None:
    """bench_push's first value in an /api/v1/metrics answer holding one group."""
    data = json.loads(api_body)["data"]
    return float(data[0]["bench_push"]["metrics"][0]["value"]) if data and "bench_push" in data[0] else None


def read_after_write(res: Results, a: Gateway, b: Gateway, groups: int, count: int) -> tuple[str, str]:
    """Each push on A acknowledged, then at once read on B: B's catch-up must show it."""
    ca = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    cb = http.client.HTTPConnection("127.0.0.1", b.port, timeout=30)
    seen, reads = 0, []
    for k in range(count):
        g, value = k % groups, 7_000_000_000 + k
        ca.request("PUT", pl.push_path(g), body=f"# TYPE bench_push gauge\nbench_push{{i=\"0\"}} {value}\n".encode())
        resp = ca.getresponse()
        resp.read()
        t0 = time.perf_counter()
        cb.request("GET", f"/api/v1/metrics?match[]=%7Binstance%3D%22g{g}%22%7D")
        body = cb.getresponse().read()
        reads.append(time.perf_counter() - t0)
        seen += resp.status == 200 and shown_value(body) == value
    ca.close()
    cb.close()
    if seen != count:
        res.problems.append(f"read after write: B showed {seen} of {count} pushes acknowledged on A")
    log(f"    read after write: B showed {seen} of {count} pushes acknowledged on A just before,"
        f" read median {1e3 * statistics.median(reads):.2f} ms")
    return f"{seen} of {count}", f"{1e3 * statistics.median(reads):.2f} ms"


# --- reads and readiness on a stored state --------------------------------------------------


def timed_reads(gws: list[Gateway], count: int) -> list[list[float]]:
    """``count`` reads of READ_PATH on each gateway, alternately, over keep-alive connections."""
    conns = [http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30) for gw in gws]
    times: list[list[float]] = [[] for _ in gws]
    for k in range(count + 5):
        for i, conn in enumerate(conns):
            t0 = time.perf_counter()
            conn.request("GET", READ_PATH)
            resp = conn.getresponse()
            body = resp.read()
            if k >= 5:  # the first few warm up
                times[i].append(time.perf_counter() - t0)
            if resp.status != 200 or b"benchread" not in body:
                raise RuntimeError(f"read on {gws[i].url} answered {resp.status}: {body[:200]!r}")
    for conn in conns:
        conn.close()
    return times


def run_stored(res: Results, sizes: Sizes, pg, tmp: Path) -> None:
    """Per size: build the same state on a replica and on SQLite; reads (at read_store); new replica vs restart."""
    unchecked = "--push.disable-consistency-check"
    for n in sizes.ready_stores:
        label = fmt_n(n)
        per = min(sizes.per_group, n)
        pushes = bulk_pushes(n // per, per) + [("/metrics/job/benchread/instance/r", b"bench_read 1\n")]
        want = pl.Expectation(summary=pl.merge(pl.bulk_summary(n // per, per), {"bench_read": [1, 1.0]}))
        url, db = pg.create_database(), tmp / f"state-{label}.db"
        builder = replicas(url, 1, [unchecked])[0]
        single = gateways.start("pushgw", [f"--persistence.file={db}", unchecked])
        try:
            for name, gw in (("replica", builder), ("SQLite", single)):
                took = put_all(gw, pushes)
                res.verify(f"state {label} on {name}", wait_complete(gw, want, 60)[0], want)
                log(f"  build {label} on {name}: {took:.1f}s")
            if n == sizes.read_store:
                read_cost(res, sizes, label, builder, single)
        finally:
            gateways.stop(single, timeout=120)
        try:
            ready_rounds(res, label, url, db, want, unchecked, sizes.rounds, target=n == max(sizes.ready_stores))
        finally:
            gateways.stop(builder, timeout=60)


def read_cost(res: Results, sizes: Sizes, label: str, replica: Gateway, single: Gateway) -> None:
    rep, sql = timed_reads([replica, single], sizes.reads)
    rep_ms, sql_ms = 1e3 * statistics.median(rep), 1e3 * statistics.median(sql)
    added = rep_ms - sql_ms
    log(f"    reads at {label}: replica median {rep_ms:.2f} ms p99 {1e3 * percentile(rep, 99):.2f} ms;"
        f" SQLite median {sql_ms:.2f} ms p99 {1e3 * percentile(sql, 99):.2f} ms")
    res.line(f"read /api/v1/metrics?match[] at {label}, replica / SQLite (median)",
             f"{rep_ms:.2f} / {sql_ms:.2f} ms", "-")
    res.line(f"catch-up added to a read at {label}", f"{added:+.2f} ms", f"<= {1e3 * CATCH_UP_MAX:.0f} ms",
             added <= 1e3 * CATCH_UP_MAX)


def ready_rounds(res: Results, label: str, url: str, db: Path, want: pl.Expectation, unchecked: str,
                 rounds: int, target: bool) -> None:
    """A new replica to /-/ready, and the SQLite restart on the same state, alternately
    ``rounds`` times (median); every one's store is checked whole once ready."""
    times: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, flags in (("new replica", [f"--persistence.url={url}", unchecked]),
                            ("SQLite restart", [f"--persistence.file={db}", unchecked])):
            gw = gateways.start_unready("pushgw", flags)
            try:
                ready = gateways.wait_ready(gw, timeout=600)
                res.verify(f"{name} at {label}", scrape(gw), want)
            finally:
                gateways.stop(gw, timeout=120)
            times.setdefault(name, []).append(ready)
            log(f"    {name:15s} at {label}: ready after {ready:.2f}s")
    took = {name: statistics.median(t) for name, t in times.items()}
    ratio = took["new replica"] / took["SQLite restart"]
    res.line(f"ready with {label} stored: new replica / SQLite restart",
             f"{took['new replica']:.2f} / {took['SQLite restart']:.2f} s ({ratio:.2f}x)",
             f"<= {READY_RATIO_MAX:.0f}x" if target else "-", ratio <= READY_RATIO_MAX if target else None)


# --- main ---------------------------------------------------------------------------------------


def print_table(res: Results) -> None:
    w = max(len(label) for label, *_ in res.lines)
    v = max(len(value) for _, value, *_ in res.lines)
    t = max(len(target) for *_, target, _ in res.lines)
    head = f"{'measure':{w}}  {'value':{v}}  {'target':{t}}  result"
    log("\n" + head + "\n" + "-" * len(head))
    for label, value, target, result in res.lines:
        log(f"{label:{w}}  {value:{v}}  {target:{t}}  {result}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    sizes = MODES[mode]
    log(f"pushgw HA benchmark, {mode} mode, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    if loadgen.generator_name() != "wrk":
        log("wrk is not installed (apt-get install wrk): the HA benchmark needs it")
        return 2
    res = Results()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pushgw-ha-bench-") as tmpdir:
        tmp = Path(tmpdir)
        broken = gateways.snapshot_pushgw(tmp / "src")
        if broken:
            log(f"pushgw cannot start right now: {broken}")
            return 2
        log(f"pushgw: {describe_tree()}, run from a snapshot taken now")
        pg = start_database()
        if pg is None:
            return 2
        try:
            log("[pushes]")
            run_pushes(res, sizes, pg, tmp)
            log("[stored state: reads, readiness]")
            run_stored(res, sizes, pg, tmp)
        except KeyboardInterrupt:
            log("interrupted")
            return 130
        finally:
            gateways.stop_all()
            pg.close()
    print_table(res)
    return finish(t0, res.problems, res.checks)


if __name__ == "__main__":
    sys.exit(main())
