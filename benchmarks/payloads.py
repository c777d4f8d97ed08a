"""Push bodies the benchmark sends and the checks of what a scrape must hold.

Every value is an integer below 2**53, so sums are exact in floats whatever
order a gateway renders the series in, and every value encodes where it
belongs (group, series, round token): a gateway that drops, duplicates,
mixes up or keeps stale samples fails the check, however fast it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PUSH_JOB = "benchpush"  # small pushes: /metrics/job/benchpush/instance/g<N>
BULK_JOB = "benchbulk"  # the stored background: /metrics/job/benchbulk/instance/b<N>
BIG_JOB = "benchbig"  # scenario (c): one group, 10,000 series
TOKEN_SCALE = 1_000_000  # push value = token * TOKEN_SCALE + group * 100 + series
HIST_BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5")

Summary = dict[str, list[float]]  # sample name -> [count, sum]


def push_path(group: int) -> str:
    return f"/metrics/job/{PUSH_JOB}/instance/g{group}"


def push_value(token: int, group: int, series: int) -> int:
    """Must match benchmarks/lua/push_groups.lua, which builds the same bodies."""
    return token * TOKEN_SCALE + group * 100 + series


def push_body(token: int, group: int, series: int) -> bytes:
    lines = ["# TYPE bench_push gauge"]
    lines += [f'bench_push{{i="{i}"}} {push_value(token, group, i)}' for i in range(series)]
    return ("\n".join(lines) + "\n").encode()


def bulk_path(group: int) -> str:
    return f"/metrics/job/{BULK_JOB}/instance/b{group}"


def bulk_body(group: int, per_group: int) -> bytes:
    """One background group: ``per_group`` counters of one family, values unique per series."""
    base = group * per_group
    lines = ["# HELP bench_bulk_total Background series of the benchmark.", "# TYPE bench_bulk_total counter"]
    lines += [f'bench_bulk_total{{series="s{i}",zone="z{i % 7}"}} {base + i}' for i in range(per_group)]
    return ("\n".join(lines) + "\n").encode()


def bulk_summary(groups: int, per_group: int) -> Summary:
    n = groups * per_group
    return {"bench_bulk_total": [n, n * (n - 1) // 2]}


def big_body(token: int, counters: int = 4000, gauges: int = 3998, histograms: int = 154) -> bytes:
    """Scenario (c): counters, gauges and a histogram, 10,000 series with the defaults."""
    base = token * 100_000
    out = ["# TYPE bench_c_total counter"]
    out += [f'bench_c_total{{k="{k}",path="/api/v1/x{k % 50}"}} {base + k}' for k in range(counters)]
    out.append("# TYPE bench_g gauge")
    out += [f'bench_g{{k="{k}"}} {-(base + k)}' for k in range(gauges)]
    out.append("# TYPE bench_h histogram")
    for j in range(histograms):
        for b, bound in enumerate(HIST_BOUNDS):
            out.append(f'bench_h_bucket{{j="{j}",le="{bound}"}} {base + j * 20 + b}')
        out.append(f'bench_h_bucket{{j="{j}",le="+Inf"}} {base + j * 20 + 11}')
        out.append(f'bench_h_sum{{j="{j}"}} {base + j}')
        out.append(f'bench_h_count{{j="{j}"}} {base + j * 20 + 11}')
    return ("\n".join(out) + "\n").encode()


def shape_line(thread: int, k: int) -> bytes:
    """A series of one push's own (lua/push_body.lua with "vary" writes the same)."""
    return b'bench_c_shape{push="%d-%d"} 1\n' % (thread, k)


def summarize(text: bytes, prefix: bytes = b"bench_") -> Summary:
    """Count and sum the samples of every name starting with ``prefix``.

    Works on pushed bodies and on scrapes alike (grouping labels do not
    change counts or sums), so the expectation is computed from what was sent.
    Lines of one name come in runs; a run is summed in one go (1M lines ~0.8 s).
    """
    out: Summary = {}
    run: bytes | None = None  # "name{" or "name " of the current run
    entry: list[float] = [0, 0.0]
    values: list[bytes] = []

    def flush() -> None:
        entry[0] += len(values)
        entry[1] += sum(map(float, values))
        values.clear()

    for line in text.split(b"\n"):
        if run is not None and line.startswith(run):
            values.append(line[line.rfind(b" ") + 1:])
            continue
        if not line.startswith(prefix):
            continue
        flush()
        space = line.rfind(b" ")
        brace = line.find(b"{")
        labeled = 0 <= brace < space
        name = line[:brace] if labeled else line[:space]
        run = name + (b"{" if labeled else b" ")
        entry = out.setdefault(name.decode(), [0, 0.0])
        values.append(line[space + 1:])
    flush()
    return out


def merge(*summaries: Summary) -> Summary:
    out: Summary = {}
    for s in summaries:
        for name, (count, total) in s.items():
            entry = out.setdefault(name, [0, 0.0])
            entry[0] += count
            entry[1] += total
    return out


_PUSH_LINE = re.compile(rb'^bench_push\{([^}]*)\} (\S+)$', re.M)
_LABEL = re.compile(rb'(\w+)="([^"]*)"')


@dataclass
class Expectation:
    """What one gateway must hold; updated as the benchmark pushes."""

    summary: Summary = field(default_factory=dict)  # exact counts and sums, push groups excluded
    push_groups: int = 0  # groups g0..g<N-1> of bench_push, each with push_series series
    push_series: int = 10
    token: int = 0  # the newest round token pushed to those groups
    token_c: int = 0  # the newest round token of scenario (c)'s big body
    must_have_token: int = 0  # at least this many groups must hold ``token``


def check(body: bytes, want: Expectation) -> list[str]:
    """Problems found in a scrape (an empty list means correct)."""
    problems: list[str] = []
    got = summarize(body)
    got.pop("bench_push", None)
    for name in sorted(set(got) | set(want.summary)):
        g, w = got.get(name, [0, 0.0]), want.summary.get(name, [0, 0.0])
        if g[0] != w[0] or g[1] != w[1]:
            problems.append(f"{name}: {g[0]} samples summing to {g[1]:.0f}, want {w[0]} summing to {w[1]:.0f}")
    if want.push_groups:
        problems += check_push_groups(body, want)
    return problems


def check_push_groups(body: bytes, want: Expectation) -> list[str]:
    """Every push group holds all its series, each from some round, and enough hold the newest."""
    per_group: dict[int, set[int]] = {}
    series: dict[int, int] = {}
    bad = 0
    for labels, value in _PUSH_LINE.findall(body):
        lab = dict(_LABEL.findall(labels))
        try:
            g, i, v = int(lab[b"instance"][1:]), int(lab[b"i"]), int(float(value))
        except (KeyError, ValueError):
            bad += 1
            continue
        token, rest = divmod(v, TOKEN_SCALE)
        if rest != g * 100 + i or token > want.token or lab.get(b"job") != PUSH_JOB.encode():
            bad += 1
            continue
        per_group.setdefault(g, set()).add(token)
        series[g] = series.get(g, 0) + 1
    problems = []
    if bad:
        problems.append(f"bench_push: {bad} samples with wrong labels or values")
    wrong = [g for g in range(want.push_groups) if series.get(g) != want.push_series]
    if wrong or len(series) != want.push_groups:
        problems.append(f"bench_push: {len(wrong)} of {want.push_groups} groups lack series "
                        f"or have extra ones (e.g. g{wrong[:3]}); {len(series)} groups seen")
    mixed = sum(1 for tokens in per_group.values() if len(tokens) > 1)
    if mixed:
        problems.append(f"bench_push: {mixed} groups mix samples of different pushes")
    newest = sum(1 for tokens in per_group.values() if tokens == {want.token})
    if newest < want.must_have_token:
        problems.append(f"bench_push: only {newest} groups hold the newest push (token {want.token}), "
                        f"want at least {want.must_have_token}")
    return problems
