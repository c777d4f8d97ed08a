"""pushgw against the official Pushgateway: the scenarios and targets of issue 6.

    python benchmarks/bench.py            # full mode, under 10 minutes
    python benchmarks/bench.py --quick    # under a minute
    python benchmarks/bench.py --smoke    # tiny sizes, same code paths (the test suite's smoke test)

Both gateways run with the same flags on 127.0.0.1; each scenario runs on
them alternately (A B A B ...), load comes from wrk in its own process, and
every scenario ends with a scrape that must hold exactly what was pushed.
Exit code 1 when a correctness check fails (targets missed do not fail).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateways  # noqa: E402
import loadgen  # noqa: E402
import payloads as pl  # noqa: E402
from gateways import Gateway, cpu_seconds, rss_kb  # noqa: E402
from scrape_client import timed_scrape  # noqa: E402

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sizes:
    """How big and how long each scenario is, per mode."""

    rounds: int
    push_groups: int  # (a): groups of 10 series each, part of small_store
    small_store: int  # series stored for (a), (c), (e), (h)
    mid_store: int  # (b), (d), (f)
    big_store: int  # (d), (f) at 1M; 0 skips
    restart_stores: tuple[int, ...]  # (g)
    push_seconds: int  # (a), (b), (h); wrk takes whole seconds
    mixed_seconds: int  # (e)
    big_push_seconds: int  # (c)
    big_body: tuple[int, int, int]  # (c): counters, gauges, histogram label sets (13 lines each)
    scrapes_mid: int
    scrapes_big: int
    connections: int = 8
    big_connections: int = 4
    mid_bulk_per_group: int = 10_000  # growth to mid_store, consistency check on
    bulk_per_group: int = 1000  # 1M and restart stores (consistency check off)


MODES = {
    "full": Sizes(3, 1000, 10_000, 100_000, 1_000_000, (100_000, 1_000_000), 4, 5, 3,
                  (4000, 3998, 154), 3, 2),
    "quick": Sizes(1, 300, 10_000, 100_000, 0, (20_000,), 2, 2, 2, (4000, 3998, 154), 2, 0),
    "smoke": Sizes(1, 100, 1_000, 10_000, 0, (2_000,), 1, 1, 1, (400, 398, 16), 2, 0),
}


# --- results ------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a measured quantity on both gateways."""

    label: str
    unit: str
    higher_is_better: bool
    target: str = ""  # "min:20", "max:0.1", "b_vs_a" or "" (informational)
    values: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)  # (server, generator, wall)
    wrong: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, value: float, cpu: tuple[float, float, float] | None = None) -> None:
        self.values.setdefault(kind, []).append(value)
        if cpu is not None:
            self.cpu.setdefault(kind, []).append(cpu)

    def median(self, kind: str) -> float | None:
        vals = self.values.get(kind)
        return statistics.median(vals) if vals else None


class Report:
    """Rows in issue order, the correctness problems, and notes."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.checks = 0

    def row(self, key: str, label: str, unit: str, higher: bool, target: str = "") -> Row:
        if key not in self.rows:
            self.rows[key] = Row(label, unit, higher, target)
        return self.rows[key]

    def verify(self, key: str, kind: str, body: bytes, want: pl.Expectation, extra: list[str] = ()) -> bool:
        """Run the scrape check; a failure marks the row's value for ``kind`` as wrong."""
        self.checks += 1
        problems = list(extra) + pl.check(body, want)
        if problems:
            self.rows[key].wrong.setdefault(kind, []).extend(problems)
            self.problems += [f"{key} [{kind}]: {p}" for p in problems]
            print(f"    CHECK FAILED {key} [{kind}]: {problems[0]}", flush=True)
        return not problems


def log(msg: str) -> None:
    print(msg, flush=True)


# --- talking to a gateway (setup, not measured) ---------------------------------------


def put_all(gw: Gateway, pushes: list[tuple[str, bytes]], method: str = "PUT") -> float:
    """Push bodies one after another over one keep-alive connection; returns seconds."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=300)
    try:
        for path, body in pushes:
            conn.request(method, path, body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
            resp = conn.getresponse()
            text = resp.read()
            if resp.status >= 400:
                raise RuntimeError(f"{gw.kind}: {method} {path} answered {resp.status}: {text[:300]!r}")
    finally:
        conn.close()
    return time.monotonic() - t0


def scrape(gw: Gateway, accept_gzip: bool = False) -> bytes:
    _, resp, _ = timed_scrape(gw.url + "/metrics", accept_gzip)
    if resp.status != 200:
        raise RuntimeError(f"{gw.kind}: scrape answered {resp.status}")
    return resp.body()


def wait_complete(gw: Gateway, want: pl.Expectation, timeout: float) -> tuple[bytes, float]:
    """Scrape until the check passes (the official applies unchecked pushes asynchronously).

    Returns the last body and the monotonic time its scrape finished.
    """
    deadline = time.monotonic() + timeout
    while True:
        body = scrape(gw)
        done_at = time.monotonic()
        if not pl.check(body, want) or done_at > deadline:
            return body, done_at
        time.sleep(0.05)


def small_store_pushes(sizes: Sizes) -> tuple[list[tuple[str, bytes]], pl.Expectation]:
    """(a)'s store: the push groups (token 0), then one bulk group filling up to small_store."""
    pushes = [(pl.push_path(g), pl.push_body(0, g, 10)) for g in range(sizes.push_groups)]
    want = pl.Expectation(push_groups=sizes.push_groups)
    rest = sizes.small_store - 10 * sizes.push_groups
    if rest > 0:
        pushes.append((pl.bulk_path(10_000), pl.bulk_body(0, rest)))
        want.summary = pl.summarize(pushes[-1][1])
    return pushes, want


def bulk_pushes(groups: int, per_group: int, first: int = 0) -> list[tuple[str, bytes]]:
    return [(pl.bulk_path(first + g), pl.bulk_body(first + g, per_group)) for g in range(groups)]


def start_pair(kinds: list[str], flags_for) -> dict[str, Gateway]:
    return {kind: gateways.start(kind, flags_for(kind)) for kind in kinds}


def memory_flags(kind: str) -> list[str]:
    return ["--persistence.file="]


# --- scenarios ------------------------------------------------------------------------


def push_round(report: Report, key: str, gw: Gateway, want: pl.Expectation, sizes: Sizes) -> None:
    """One wrk run of small pushes over the push groups, then the scrape check."""
    want.token += 1
    cpu0 = cpu_seconds(gw.pid)
    res = loadgen.push_groups(gw.url, want.push_groups, want.push_series, want.token,
                              sizes.push_seconds, sizes.connections)
    cpu = (cpu_seconds(gw.pid) - cpu0, res.gen_cpu, res.seconds)
    want.must_have_token = max(0, min(want.push_groups, res.requests) - sizes.connections)
    report.rows[key].add(gw.kind, res.rate, cpu)
    errors = [f"{n} {k} errors in the load" for k, n in res.errors.items() if n]
    report.verify(key, gw.kind, scrape(gw), want, errors)
    log(f"    {key} {gw.kind:8s} {res.rate:9.1f} pushes/s  p50 {res.p50_ms:8.1f} ms  p99 {res.p99_ms:8.1f} ms"
        f"  cpu server {cpu[0]:.1f}s gen {cpu[1]:.1f}s wall {cpu[2]:.1f}s")


def big_push_round(report: Report, gw: Gateway, want: pl.Expectation, sizes: Sizes, tmp: Path,
                   key: str = "c", vary: bool = False) -> None:
    """(c): one 10,000-series body PUT to one group again and again.

    ``vary`` gives each push a series of its own, so that pushgw prepares
    every push in full instead of from the template of the one before.
    """
    want.token_c += 1
    body = pl.big_body(want.token_c, *sizes.big_body)
    body_file = tmp / f"big-{gw.kind}.txt"
    body_file.write_bytes(body)
    path = f"/metrics/job/{pl.BIG_JOB}/instance/one"
    cpu0 = cpu_seconds(gw.pid)
    res = loadgen.push_body(gw.url, "PUT", path, str(body_file), sizes.big_push_seconds, sizes.big_connections,
                            vary)
    cpu = (cpu_seconds(gw.pid) - cpu0, res.gen_cpu, res.seconds)
    for name in [n for n in want.summary if n.startswith(("bench_c_", "bench_g", "bench_h"))]:
        del want.summary[name]
    want.summary = pl.merge(want.summary, pl.summarize(body + (pl.shape_line(0, 0) if vary else b"")))
    report.rows[key].add(gw.kind, res.rate, cpu)
    errors = [f"{n} {k} errors in the load" for k, n in res.errors.items() if n]
    if res.requests == 0:
        errors.append("no push completed")
    report.verify(key, gw.kind, scrape(gw), want, errors)
    log(f"    {key} {gw.kind:8s} {res.rate:9.1f} pushes/s of {len(body) // 1024} KiB  p50 {res.p50_ms:.1f} ms"
        f"  cpu server {cpu[0]:.1f}s gen {cpu[1]:.1f}s wall {cpu[2]:.1f}s")


def mixed_round(report: Report, gw: Gateway, want: pl.Expectation, sizes: Sizes, tmp: Path) -> None:
    """(e): scrapes once a second (own process) while wrk pushes as in (a)."""
    want.token += 1
    saved = tmp / f"mixed-{gw.kind}.txt"
    cpu0 = cpu_seconds(gw.pid)
    scraper = loadgen.spawn([sys.executable, str(HERE / "scrape_client.py"), gw.url + "/metrics",
                             "--interval", "1", "--duration", str(sizes.mixed_seconds),
                             "--deadline", str(sizes.mixed_seconds + 60), "--save", str(saved)])
    res = loadgen.push_groups(gw.url, want.push_groups, want.push_series, want.token,
                              sizes.mixed_seconds, sizes.connections)
    scr = loadgen.reap(scraper, timeout=sizes.mixed_seconds + 90)
    cpu = (cpu_seconds(gw.pid) - cpu0, res.gen_cpu + scr.cpu, res.seconds)
    lat, scrape_errors = parse_scrapes(scr.stdout)
    want.must_have_token = max(0, min(want.push_groups, res.requests) - sizes.connections)
    p99 = percentile(lat, 99) if lat else float("nan")
    report.rows["e-scrape"].add(gw.kind, p99, cpu)
    report.rows["e-push"].add(gw.kind, res.rate, cpu)
    errors = [f"{n} {k} errors in the load" for k, n in res.errors.items() if n]
    if scrape_errors or not lat:
        errors.append(f"{scrape_errors} failed scrapes of {len(lat) + scrape_errors}")
    report.verify("e-push", gw.kind, scrape(gw), want, errors)
    if saved.exists():  # a scrape taken during the load: counts must be whole already
        during = pl.Expectation(summary=want.summary, push_groups=want.push_groups, token=want.token)
        report.verify("e-scrape", gw.kind, saved.read_bytes(), during)
    log(f"    e {gw.kind:8s} scrape p99 {p99:8.1f} ms over {len(lat)} scrapes, {res.rate:9.1f} pushes/s"
        f"  cpu server {cpu[0]:.1f}s gens {cpu[1]:.1f}s wall {cpu[2]:.1f}s")


def parse_scrapes(stdout: str) -> tuple[list[float], int]:
    for line in stdout.splitlines():
        if line.startswith("SCRAPE_RESULT "):
            r = json.loads(line[len("SCRAPE_RESULT "):])
            return r["latencies_ms"], r["errors"] + r["change_errors"]
    raise RuntimeError(f"scrape client gave no result:\n{stdout[-2000:]}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def scrape_round(report: Report, key: str, gw: Gateway, want: pl.Expectation, count: int,
                 accept_gzip: bool, change: tuple[str, bytes], tmp: Path) -> None:
    """(d): ``count`` scrapes, each right after a push so no cached body can answer."""
    reserve_mb = 1 + sum(c for c, _ in want.summary.values()) * 100 // (1 << 20)  # ~80 bytes a line
    change_file = tmp / f"change-{gw.kind}.txt"
    change_file.write_bytes(change[1])
    saved = tmp / f"scrape-{gw.kind}.txt"
    saved.unlink(missing_ok=True)
    argv = [sys.executable, str(HERE / "scrape_client.py"), gw.url + "/metrics", "--count", str(count),
            "--change", "PUT", change[0], str(change_file), "--save", str(saved), "--deadline", "240",
            "--reserve-mb", str(reserve_mb)]
    if accept_gzip:
        argv.append("--gzip")
    cpu0 = cpu_seconds(gw.pid)
    child = loadgen.run_child(argv, timeout=300)
    lat, errors = parse_scrapes(child.stdout)
    cpu = (cpu_seconds(gw.pid) - cpu0, child.cpu, child.wall)
    report.rows[key].add(gw.kind, statistics.median(lat) if lat else float("nan"), cpu)
    extra = [f"{errors} failed scrapes or change pushes"] if errors or not lat else []
    body = saved.read_bytes() if saved.exists() else b""
    report.verify(key, gw.kind, body, want, extra)
    log(f"    {key} {gw.kind:8s} median {statistics.median(lat) if lat else 0:8.1f} ms of {len(lat)}"
        f"  cpu server {cpu[0]:.1f}s client {cpu[1]:.1f}s")


def record_memory(report: Report, key: str, gw: Gateway, n: int) -> None:
    """(f): bytes per stored series = (RSS now - RSS idle) / n, after a scrape and a settle."""
    time.sleep(1.0)
    rss = rss_kb(gw.pid)
    report.row("f-idle", "(f) RSS idle", "MiB", False).add(gw.kind, gw.idle_rss_kb / 1024)
    report.rows[key].add(gw.kind, (rss - gw.idle_rss_kb) * 1024 / n)
    log(f"    f {gw.kind:8s} RSS idle {gw.idle_rss_kb / 1024:.1f} MiB, at {n:,} series {rss / 1024:.1f} MiB"
        f" (peak {rss_kb(gw.pid, 'VmHWM') / 1024:.1f} MiB): {(rss - gw.idle_rss_kb) * 1024 / n:.0f} B/series")


def fmt_n(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def run_small_and_mid(report: Report, sizes: Sizes, kinds: list[str], tmp: Path) -> None:
    """(a), (e), (c) on the small store, then grow it to mid_store for (b), (d), (f)."""
    small, mid = fmt_n(sizes.small_store), fmt_n(sizes.mid_store)
    report.row("a", f"(a) push 10 series to {sizes.push_groups} groups, {small} stored", "/s", True, "min:20")
    report.row("b", f"(b) push 10 series to {sizes.push_groups} groups, {mid} stored", "/s", True, "b_vs_a")
    c_series = sizes.big_body[0] + sizes.big_body[1] + 13 * sizes.big_body[2]
    report.row("c", f"(c) push {c_series:,} series to one group", "/s", True, "min:1")
    report.row("e-scrape", "(e) scrape p99 during (a) load", "ms", False)
    report.row("e-push", "(e) pushes during 1/s scrapes", "/s", True)
    pushes, want0 = small_store_pushes(sizes)
    gws = start_pair(kinds, memory_flags)
    wants = {k: pl.Expectation(summary=dict(want0.summary), push_groups=want0.push_groups) for k in kinds}
    try:
        for kind, gw in gws.items():
            log(f"  build {small} on {kind}: {put_all(gw, pushes):.1f}s")
            report.verify("a", kind, scrape(gw), wants[kind])
        for _ in range(sizes.rounds):
            for kind in kinds:
                push_round(report, "a", gws[kind], wants[kind], sizes)
        for _ in range(sizes.rounds):
            for kind in kinds:
                mixed_round(report, gws[kind], wants[kind], sizes, tmp)
        for _ in range(sizes.rounds):
            for kind in kinds:
                big_push_round(report, gws[kind], wants[kind], sizes, tmp)
        run_mid(report, sizes, kinds, gws, wants, tmp)
    finally:
        for gw in gws.values():
            gateways.stop(gw)


def run_big_push_alone(report: Report, sizes: Sizes, kinds: list[str], tmp: Path) -> None:
    """(c) again on gateways holding nothing else.

    The official re-checks everything stored on every push, so with (a)'s
    10k series stored its (c) rate falls; this row shows the push on its own.
    """
    c_series = sizes.big_body[0] + sizes.big_body[1] + 13 * sizes.big_body[2]
    report.row("c-alone", f"(c) push {c_series:,} series, nothing else stored", "/s", True, "min:1")
    report.row("c-new", "(c) the same, a new shape each push (no template)", "/s", True)
    gws = start_pair(kinds, memory_flags)
    wants = {k: pl.Expectation() for k in kinds}
    try:
        for _ in range(sizes.rounds):
            for kind in kinds:
                big_push_round(report, gws[kind], wants[kind], sizes, tmp, key="c-alone")
            for kind in kinds:
                big_push_round(report, gws[kind], wants[kind], sizes, tmp, key="c-new", vary=True)
    finally:
        for gw in gws.values():
            gateways.stop(gw)


def run_mid(report: Report, sizes: Sizes, kinds: list[str], gws: dict[str, Gateway],
            wants: dict[str, pl.Expectation], tmp: Path) -> None:
    """Grow the store with bulk groups (consistency check on) to mid_store; (f), (b), (d)."""
    mid = fmt_n(sizes.mid_store)
    have = sizes.small_store + sum(sizes.big_body[:2]) + 13 * sizes.big_body[2]
    per = sizes.mid_bulk_per_group
    groups = (sizes.mid_store - have) // per
    grow = bulk_pushes(groups, per)
    rest = sizes.mid_store - have - groups * per
    if rest > 0:
        grow.append((pl.bulk_path(groups), pl.bulk_body(groups, rest)))
    report.row(f"f-{mid}", f"(f) bytes per series at {mid}", "B", False)
    for kind in kinds:
        log(f"  grow to {mid} on {kind}: {put_all(gws[kind], grow):.1f}s")
        wants[kind].summary = pl.merge(wants[kind].summary, pl.summarize(b"".join(b for _, b in grow)))
        report.verify(f"f-{mid}", kind, scrape(gws[kind]), wants[kind])
        record_memory(report, f"f-{mid}", gws[kind], sizes.mid_store)
    for _ in range(sizes.rounds):
        for kind in kinds:
            push_round(report, "b", gws[kind], wants[kind], sizes)
    change = grow[0]
    for accept_gzip in (False, True):
        key = f"d-{mid}-{'gzip' if accept_gzip else 'plain'}"
        report.row(key, f"(d) scrape {mid} stored, {'gzip' if accept_gzip else 'plain'}", "ms", False, "max:0.1")
        for _ in range(sizes.rounds):
            for kind in kinds:
                scrape_round(report, key, gws[kind], wants[kind], sizes.scrapes_mid, accept_gzip, change, tmp)


def unchecked_flags(kind: str) -> list[str]:
    return ["--persistence.file=", "--push.disable-consistency-check"]


def run_big(report: Report, sizes: Sizes, kinds: list[str], tmp: Path) -> None:
    """(d) and (f) at 1M: 1,000 groups x 1,000 series, pushed with the consistency check off.

    The official needs ~0.4 s per checked push at 200k stored (it gathers the
    whole store for every check), so a checked build of 1M would take ~20 min.
    """
    n = sizes.big_store
    big = fmt_n(n)
    report.row(f"f-{big}", f"(f) bytes per series at {big}", "B", False, "max:0.5")
    pushes = bulk_pushes(n // sizes.bulk_per_group, sizes.bulk_per_group)
    want = pl.Expectation(summary=pl.bulk_summary(n // sizes.bulk_per_group, sizes.bulk_per_group))
    gws = start_pair(kinds, unchecked_flags)
    try:
        for kind, gw in gws.items():
            took = put_all(gw, pushes)
            body, _ = wait_complete(gw, want, timeout=180)
            log(f"  build {big} on {kind}: {took:.1f}s pushing, complete after {time.monotonic() - gw.started_at:.1f}s")
            report.verify(f"f-{big}", kind, body, want)
            del body
            record_memory(report, f"f-{big}", gw, n)
        for accept_gzip in (False, True):
            key = f"d-{big}-{'gzip' if accept_gzip else 'plain'}"
            report.row(key, f"(d) scrape {big} stored, {'gzip' if accept_gzip else 'plain'}", "ms", False, "max:0.1")
            for _ in range(sizes.rounds):
                for kind in kinds:
                    scrape_round(report, key, gws[kind], want, sizes.scrapes_big, accept_gzip, pushes[0], tmp)
    finally:
        for gw in gws.values():
            gateways.stop(gw)


# --- persistence: (g) and (h) ---------------------------------------------------------------


def probe_persistence(tmp: Path) -> str:
    """Whether pushgw really persists: push, stop, restart, scrape. Returns "" or why not."""
    path = tmp / "probe.db"
    flags = [f"--persistence.file={path}"]
    try:
        gw = gateways.start("pushgw", flags, ready_timeout=30)
    except RuntimeError as err:
        return f"pushgw did not start with --persistence.file: {last_error_line(str(err))}"
    try:
        put_all(gw, [("/metrics/job/probe/instance/p", b"bench_probe 42\n")])
        time.sleep(0.2)
    finally:
        code, _ = gateways.stop(gw, timeout=30)
    if code != 0:
        return f"pushgw exited {code} after a push with --persistence.file"
    try:
        gw = gateways.start("pushgw", flags, ready_timeout=10)
    except RuntimeError as err:
        return f"pushgw did not restart from its persistence file: {last_error_line(str(err))}"
    try:
        body, _ = wait_complete(gw, pl.Expectation(summary={"bench_probe": [1, 42.0]}), timeout=5)
    finally:
        gateways.stop(gw, timeout=30)
    if b"bench_probe{" not in body:
        return "pushgw accepts --persistence.file but a pushed series did not survive a restart"
    return ""


def last_error_line(output: str) -> str:
    """The most telling line of a failed start: the last error logged, else the first line."""
    lines = output.splitlines()
    errors = [line for line in lines if "level=error" in line or "Error" in line]
    return (errors[-1] if errors else lines[0] if lines else "")[:300]


def run_restart(report: Report, sizes: Sizes, kinds: list[str], tmp: Path) -> None:
    """(g): build n series with persistence, stop, then time restarts: ready, and every series served."""
    for n in sizes.restart_stores:
        label = fmt_n(n)
        report.row(f"g-ready-{label}", f"(g) restart {label}: start to /-/ready", "s", False)
        report.row(f"g-full-{label}", f"(g) restart {label}: start to full scrape", "s", False, "max:1")
        per = min(sizes.bulk_per_group, n)
        want = pl.Expectation(summary=pl.bulk_summary(n // per, per))
        pushes = bulk_pushes(n // per, per)

        def flags(kind: str) -> list[str]:
            return [f"--persistence.file={tmp / f'{kind}-restart-{label}.db'}", "--push.disable-consistency-check"]

        for kind in kinds:
            gw = gateways.start(kind, flags(kind))
            took = put_all(gw, pushes)
            body, _ = wait_complete(gw, want, timeout=180)
            report.verify(f"g-full-{label}", kind, body, want)
            del body
            code, stop_s = gateways.stop(gw, timeout=180)
            log(f"  build {label} with persistence on {kind}: {took:.1f}s; stop (exit {code}) {stop_s:.1f}s")
        for _ in range(sizes.rounds):
            for kind in kinds:
                restart_round(report, label, kind, flags(kind), want)


def restart_round(report: Report, label: str, kind: str, flags: list[str], want: pl.Expectation) -> None:
    gw = gateways.start_unready(kind, flags)
    try:
        ready = gateways.wait_ready(gw, timeout=300)
        body, done_at = wait_complete(gw, want, timeout=300)
        full = done_at - gw.started_at
        cpu = (cpu_seconds(gw.pid), 0.0, full)
        report.rows[f"g-ready-{label}"].add(kind, ready, cpu)
        report.rows[f"g-full-{label}"].add(kind, full, cpu)
        report.verify(f"g-full-{label}", kind, body, want)
        del body
    finally:
        code, stop_s = gateways.stop(gw, timeout=180)
    log(f"    g {label} {kind:8s} ready {ready:.2f}s, every series {full:.2f}s; stop (exit {code}) {stop_s:.1f}s")


def run_push_persistent(report: Report, sizes: Sizes, kinds: list[str], tmp: Path) -> None:
    """(h): (a) again with --persistence.file on both (default interval)."""
    report.row("h", f"(h) (a) with persistence on, {fmt_n(sizes.small_store)} stored", "/s", True)
    pushes, want0 = small_store_pushes(sizes)
    gws = start_pair(kinds, lambda kind: [f"--persistence.file={tmp / f'{kind}-push.db'}"])
    wants = {k: pl.Expectation(summary=dict(want0.summary), push_groups=want0.push_groups) for k in kinds}
    try:
        for kind, gw in gws.items():
            log(f"  build {fmt_n(sizes.small_store)} with persistence on {kind}: {put_all(gw, pushes):.1f}s")
        for _ in range(sizes.rounds):
            for kind in kinds:
                push_round(report, "h", gws[kind], wants[kind], sizes)
    finally:
        for gw in gws.values():
            gateways.stop(gw, timeout=180)


# --- the table ------------------------------------------------------------------------------


def judge(key: str, row: Row, report: Report) -> tuple[str, str]:
    """The target text and PASS/MISS for a row ("-" and "" when it has no target)."""
    pg, off = row.median("pushgw"), row.median("official")
    if row.target == "b_vs_a":
        a = report.rows["a"].median("pushgw")
        text = "pushgw >= (a)/1.5" + (f" = {a / 1.5:.0f}" if a else "")
        ok = None if pg is None or a is None else pg >= a / 1.5
    elif row.target:
        kind, limit = row.target.split(":")
        text = f"ratio {'>=' if kind == 'min' else '<='} {limit}"
        ratio = pg / off if pg is not None and off else None
        ok = None if ratio is None else ratio >= float(limit) if kind == "min" else ratio <= float(limit)
    else:
        text, ok = "-", None
    if row.wrong:
        return text, "WRONG"
    if ok is None:
        return text, "n/a" if row.target else ""
    return text, "PASS" if ok else "MISS"


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "/s":
        return f"{v:,.1f}/s" if v < 100 else f"{v:,.0f}/s"
    if unit == "ms":
        return f"{v:,.1f} ms"
    if unit == "s":
        return f"{v:,.2f} s"
    if unit == "MiB":
        return f"{v:,.1f} MiB"
    return f"{v:,.0f} {unit}"


def print_table(report: Report) -> None:
    rows = sorted(((k, r) for k, r in report.rows.items() if r.label), key=lambda kr: kr[0][0])
    width = max(len(r.label) for _, r in rows)
    head = f"{'scenario':{width}}  {'pushgw':>12}  {'official':>12}  {'ratio':>8}  {'target':24}  result"
    log("\n" + head + "\n" + "-" * len(head))
    for key, row in rows:
        pg, off = row.median("pushgw"), row.median("official")
        ratio = f"{pg / off:.2f}x" if pg is not None and off else "n/a"
        target, result = judge(key, row, report)
        log(f"{row.label:{width}}  {fmt_value(pg, row.unit):>12}  {fmt_value(off, row.unit):>12}  "
            f"{ratio:>8}  {target:24}  {result}")
    pushes, persisted = report.rows.get("a"), report.rows.get("h")
    if pushes is not None and persisted is not None:
        for kind in ("pushgw", "official"):
            on, off = persisted.median(kind), pushes.median(kind)
            if on and off:
                log(f"persistence on/off, {kind}: {on:,.0f}/s with (h), {off:,.0f}/s without (a): "
                    f"ratio {on / off:.2f}")
    log("\nCPU seconds per run (median over rounds): server / load generator / wall")
    for key, row in rows:
        parts = []
        for kind in ("pushgw", "official"):
            cpus = row.cpu.get(kind)
            if cpus:
                srv, gen, wall = (statistics.median(c[i] for c in cpus) for i in range(3))
                parts.append(f"{kind} {srv:6.1f} / {gen:5.1f} / {wall:5.1f}")
        if parts:
            log(f"  {row.label:{width}}  " + "   ".join(parts))


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, one round, under a minute")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for the test suite (~15 s)")
    ap.add_argument("--only", default="", help="comma-separated scenario groups to run: amd,c,big,g,h")
    args = ap.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = MODES[mode]
    only = set(filter(None, args.only.split(",")))
    kinds = ["pushgw"] + (["official"] if gateways.official_binary() else [])
    report = Report()
    log(f"pushgw benchmark, {mode} mode, {sizes.rounds} round(s), {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} (other work on the machine skews the numbers)")
    log(f"load generator: {loadgen.generator_name()}"
        + ("" if loadgen.generator_name() == "wrk" else " (wrk is not installed or BENCH_GENERATOR=python: "
           "a separate Python process with http.client over keep-alive connections, which saturates "
           "sooner; watch the generator CPU column)"))
    if "official" not in kinds:
        report.notes.append("official Pushgateway not installed: pushgw numbers only, no ratios")
        log("official Pushgateway: NOT INSTALLED (apt-get install prometheus-pushgateway); pushgw only")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pushgw-bench-") as tmpdir:
        tmp = Path(tmpdir)
        broken = gateways.snapshot_pushgw(tmp / "src")
        if broken:
            log(f"pushgw cannot start from {gateways.REPO / 'pushgw'} right now: {broken}")
            return 2
        log(f"pushgw: {describe_tree()}, run from a snapshot taken now")
        try:
            run_all(report, sizes, kinds, tmp, only)
        except KeyboardInterrupt:
            log("interrupted")
            return 130
        finally:
            gateways.stop_all()
    print_table(report)
    for note in report.notes:
        log(f"note: {note}")
    return finish(t0, report.problems, report.checks)


def finish(t0: float, problems: list[str], checks: int) -> int:
    """The run's last lines: time, load, the correctness verdict; the exit code (1: a check failed)."""
    log(f"\nelapsed {time.monotonic() - t0:.0f}s, load average now {os.getloadavg()[0]:.2f}")
    if problems:
        log(f"correctness: {len(problems)} check(s) FAILED:")
        for p in problems:
            log(f"  {p}")
        return 1
    log(f"correctness: all checks passed ({checks} scrape checks)")
    return 0


def describe_tree() -> str:
    """Which code is measured: the commit and whether pushgw/ had uncommitted changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=gateways.REPO, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except OSError:
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", "pushgw")
    return f"commit {head}" + (" + uncommitted changes in pushgw/" if dirty else "")


def run_all(report: Report, sizes: Sizes, kinds: list[str], tmp: Path, only: set[str]) -> None:
    def phase(name: str, fn, *a) -> None:
        if only and name not in only:
            return
        t = time.monotonic()
        log(f"[{name}]")
        fn(*a)
        log(f"  ({time.monotonic() - t:.0f}s)")

    phase("amd", run_small_and_mid, report, sizes, kinds, tmp)
    phase("c", run_big_push_alone, report, sizes, kinds, tmp)
    if sizes.big_store:
        phase("big", run_big, report, sizes, kinds, tmp)
    if only and not ({"g", "h"} & only):
        return
    why_not = probe_persistence(tmp)
    persist_kinds = kinds
    if why_not:
        msg = "(g)/(h): pushgw persistence not available yet"
        log(f"{msg} ({why_not}); running the official alone for its baseline")
        report.notes.append(f"{msg}: {why_not}")
        persist_kinds = [k for k in kinds if k != "pushgw"]
    if persist_kinds:
        phase("g", run_restart, report, sizes, persist_kinds, tmp)
        phase("h", run_push_persistent, report, sizes, persist_kinds, tmp)


if __name__ == "__main__":
    sys.exit(main())
