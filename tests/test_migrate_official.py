"""``pushgw migrate``: files written by the real official Pushgateway, imported and compared.

The official binary builds a varied state (every metric type, a native
histogram, ``@base64`` and empty grouping label values, failed pushes, an
empty PUT) and persists it on SIGTERM. The file is imported, pushgw started
on the result and compared with the official restarted on the same file.
Truncated and bit-flipped copies of a small real file must each fail with a
clear message, a non-zero exit code and nothing written.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from pushgw import migrate
from pushgw.exposition.protobuf import MEDIA_TYPE, encode_family, parse_delimited, pb
from pushgw.model import HISTOGRAM, Metric, MetricFamily
from pushgw.storage.sqlite import Database
from servers import http_request, start_official, start_pushgw

OWN_PREFIXES = ("pushgateway_", "process_", "go_", "python_")

TEXT_PUSH = b"""# TYPE c counter
# HELP c A counter.
c{a="1"} 3
c{a="",b="x"} 4
# TYPE g gauge
g 1.5
u 7
u{kind="other"} -2
# TYPE s summary
s{quantile="0.5"} 1
s{quantile="0.9"} 2
s_sum 10
s_count 5
# TYPE h histogram
# HELP h A histogram without +Inf.
h_bucket{le="1"} 1
h_bucket{le="2.5"} 2
h_sum 3
h_count 2
"""


def _native_histogram_body() -> bytes:
    mf = pb.MetricFamily(name="nh", help="A native histogram.", type=pb.MetricType["HISTOGRAM"])
    h = mf.metric.add().histogram
    h.sample_count, h.sample_sum, h.schema, h.zero_threshold, h.zero_count = 5, 12.5, 3, 1e-128, 1
    h.positive_span.add(offset=0, length=2)
    h.positive_delta.extend([2, -1])
    body = mf.SerializeToString()
    assert len(body) < 128  # a one-byte length prefix
    classic = MetricFamily("ph", HISTOGRAM, "", [Metric({}, count=2, sum=1.0, buckets=[(1.0, 2)])])
    return bytes([len(body)]) + body + encode_family(classic)


def _push(server, method: str, path: str, body: bytes, content_type: str = "text/plain") -> int:
    status, _, answer = http_request(method, server.url + path, body, {"Content-Type": content_type})
    return status


def _official_state(path: Path) -> None:
    """Build the varied state on a real official and let it persist on SIGTERM."""
    with start_official(persistence_file=str(path)) as official:
        assert _push(official, "POST", "/metrics/job/j1/instance/i1", TEXT_PUSH) == 200
        assert _push(official, "PUT", "/metrics/job/j2/path@base64/L3Zhci90bXA=/empty@base64/=",
                     # Same HELP: with different ones the official shows one at random.
                     b"# TYPE c counter\n# HELP c A counter.\nc{b=\"y\"} 1\nx 1\n") == 200
        assert _push(official, "PUT", "/metrics/job/native", _native_histogram_body(), MEDIA_TYPE) == 200
        assert _push(official, "PUT", "/metrics/job/emptyput", b"") == 200
        # Refused for inconsistency (c is a counter): the group is created, marked failed.
        assert _push(official, "POST", "/metrics/job/fail", b"# TYPE c gauge\nc 1\n") == 400
        # A group that succeeded once, then failed: its metrics stay, last push failed.
        assert _push(official, "PUT", "/metrics/job/j3", b"z 1\n") == 200
        assert _push(official, "POST", "/metrics/job/j3", b"# TYPE c gauge\nc 2\n") == 400
        # A group whose family got replaced by a later POST: two different family timestamps.
        assert _push(official, "POST", "/metrics/job/j1/instance/i1", b"# TYPE g gauge\ng 2.5\n") == 200
        assert official.stop() == 0
    assert path.stat().st_size > 0


@pytest.fixture(scope="module")
def official_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("official") / "pushgateway.data"
    _official_state(path)
    return path


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    """A small real file: one group with one gauge."""
    path = tmp_path_factory.mktemp("small") / "small.data"
    with start_official(persistence_file=str(path)) as official:
        assert _push(official, "PUT", "/metrics/job/s", b"a 1\n") == 200
        assert official.stop() == 0
    return path


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pushgw", "migrate", *args],
                          capture_output=True, text=True, timeout=60)


def _text_families(body: bytes) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (header lines, sorted sample lines), the gateways' own families left out."""
    families: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in body.decode().splitlines():
        if line.startswith("# "):
            current = line.split(" ")[2]
            families.setdefault(current, ([], []))[0].append(line)
        else:
            families[current][1].append(line)
    return {n: (h, sorted(s)) for n, (h, s) in families.items() if not n.startswith(OWN_PREFIXES)}


def _api_groups(body: bytes) -> dict[str, dict]:
    """Groups by their sorted labels; each family's time_stamp as Unix microseconds."""
    groups = {}
    for group in json.loads(body)["data"]:
        for value in group.values():
            if isinstance(value, dict) and "time_stamp" in value:
                stamp = value["time_stamp"]
                # Go writes nanoseconds; pushgw keeps microseconds (a float of Unix seconds).
                seconds, _, fraction = stamp.rstrip("Z").partition(".")
                whole = datetime.fromisoformat(seconds + "+00:00").timestamp()
                value["time_stamp"] = round(whole * 1e6 + float("0." + (fraction or "0")) * 1e6)
        groups[json.dumps(sorted(group["labels"].items()))] = group
    return groups


def _close_stamps(official: dict, ours: dict) -> None:
    """Equal time stamps to the microsecond (rounding may differ by one)."""
    for key, group in official.items():
        for name, value in group.items():
            if isinstance(value, dict) and "time_stamp" in value:
                theirs = ours[key][name]["time_stamp"]
                assert abs(theirs - value["time_stamp"]) <= 1, (key, name)
                ours[key][name]["time_stamp"] = value["time_stamp"]


def test_import_serves_what_the_official_serves(official_file, tmp_path):
    db = tmp_path / "pushgw.db"
    done = _run_cli("--from", str(official_file), "--to", str(db))
    assert done.returncode == 0, done.stderr
    assert "migrated 6 groups" in done.stdout, done.stdout

    # The official restarted on (a copy of) its own file is the reference.
    reference = tmp_path / "official-copy.data"
    shutil.copyfile(official_file, reference)
    with start_official(persistence_file=str(reference)) as official, \
            start_pushgw(f"--persistence.file={db}") as ours:
        texts = [http_request("GET", s.url + "/metrics")[2] for s in (official, ours)]
        apis = [http_request("GET", s.url + "/api/v1/metrics")[2] for s in (official, ours)]
        protos = [http_request("GET", s.url + "/metrics", headers={"Accept": MEDIA_TYPE})[2]
                  for s in (official, ours)]

    theirs, mine = map(_text_families, texts)
    assert set(theirs) == {"c", "g", "u", "s", "h", "x", "z", "nh", "ph",
                           "push_time_seconds", "push_failure_time_seconds"}
    assert mine == theirs

    theirs, mine = map(_api_groups, apis)
    assert len(theirs) == 6
    _close_stamps(theirs, mine)
    # Native buckets: 1.5.1 shows {}, pushgw the [rule, lower, upper, count]
    # lists of newer releases (README); the protobuf scrapes compare them below.
    for side, shape in ((theirs, dict), (mine, list)):
        for metric in side['[["job", "native"]]']["nh"]["metrics"]:
            assert isinstance(metric.pop("buckets"), shape)
    assert mine == theirs
    failed = {k for k, g in mine.items() if not g["last_push_successful"]}
    assert failed == {'[["job", "fail"]]', '[["job", "j3"]]'}

    # The native histogram survives: the same Histogram message in both protobuf scrapes.
    natives = [parse_delimited(body, utf8_names=True)["nh"].metrics[0].native for body in protos]
    assert natives[0] is not None and natives[0] == natives[1]
    assert pb.Histogram.FromString(natives[0]).schema == 3


def test_pushgw_refuses_the_official_file_naming_the_command(official_file, tmp_path):
    copy = tmp_path / "official.data"
    shutil.copyfile(official_file, copy)
    done = subprocess.run(
        [sys.executable, "-m", "pushgw", "--web.listen-address=127.0.0.1:0", f"--persistence.file={copy}"],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode != 0
    assert f"pushgw migrate --from {copy} --to NEW.db" in done.stderr
    assert copy.read_bytes() == official_file.read_bytes()


def test_sqlite_source_round_trip_and_replace(official_file, tmp_path):
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    assert migrate.main(["--from", str(official_file), "--to", str(first)]) == 0
    assert migrate.main(["--from", str(first), "--to", str(second)]) == 0
    assert _rows(first) == _rows(second)

    # A destination holding groups is refused (and left alone) unless --replace.
    other = tmp_path / "other.db"
    small = tmp_path / "small.data"
    _single_group_file(official_file, small)
    assert migrate.main(["--from", str(small), "--to", str(other)]) == 0
    before = _rows(other)
    done = _run_cli("--from", str(official_file), "--to", str(other))
    assert done.returncode == 1 and "--replace" in done.stderr
    assert _rows(other) == before
    assert migrate.main(["--from", str(official_file), "--to", str(other), "--replace"]) == 0
    assert _rows(other) == _rows(first)


def _single_group_file(official_file: Path, target: Path) -> None:
    """Any other valid source will do: a pushgw database with one group of the file."""
    full = target.with_suffix(".full.db")
    assert migrate.main(["--from", str(official_file), "--to", str(full)]) == 0
    conn = sqlite3.connect(full)
    with conn:
        keep = conn.execute("SELECT grouping FROM groups ORDER BY grouping LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM families WHERE grouping != ?", (keep,))
        conn.execute("DELETE FROM groups WHERE grouping != ?", (keep,))
    conn.close()
    shutil.move(full, target)


def _rows(path: Path, quarantine: bool = False) -> list:
    """The database's content, sorted; with ``quarantine`` only (name, quarantined) per family."""
    async def load():
        db = await Database.open(str(path))
        try:
            return sorted(
                (r.grouping, r.push_time, r.failure_time, r.problem,
                 sorted((f.name, f.quarantined) if quarantine else
                        (f.name, f.type, f.help, f.pushed_at, f.lines, f.proto) for f in r.families))
                for r in await db.load()
            )
        finally:
            await db.close()
    return asyncio.run(load())


def _fails_cleanly(source: Path, destination: Path, capsys) -> str:
    """Run migrate in-process on a damaged source: an error, exit 1, nothing written."""
    assert migrate.main(["--from", str(source), "--to", str(destination)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pushgw migrate: error: ") and "Traceback" not in err, err
    assert sorted(os.listdir(destination.parent)) == [source.name], "something was written"
    return err


def test_every_truncation_fails_cleanly(small_file, tmp_path, capsys):
    data = small_file.read_bytes()
    assert len(data) < 4096
    source, destination = tmp_path / "cut.data", tmp_path / "out.db"
    messages = set()
    for length in range(len(data)):
        source.write_bytes(data[:length])
        err = _fails_cleanly(source, destination, capsys)
        messages.add(re.sub(r"\d+", "N", err.replace(str(source), "FILE")))
    assert len(messages) > 3  # the messages say what is wrong, not one catch-all
    source.write_bytes(data)
    assert migrate.main(["--from", str(source), "--to", str(destination)]) == 0
    assert "migrated 1 groups (1 series)" in capsys.readouterr().out


def test_bit_flips_fail_cleanly_or_import(small_file, tmp_path, capsys):
    data = small_file.read_bytes()
    source, destination = tmp_path / "flip.data", tmp_path / "out.db"
    rng = random.Random(13)
    failures = 0
    for _ in range(300):
        position = rng.randrange(len(data))
        flipped = bytearray(data)
        flipped[position] ^= 1 << rng.randrange(8)
        source.write_bytes(bytes(flipped))
        code = migrate.main(["--from", str(source), "--to", str(destination)])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        if code == 0:  # a flip in a value or a name can leave a valid file
            assert "migrated" in out
            assert _rows(destination) is not None
            destination.unlink()
        else:
            failures += 1
            assert code == 1 and err.startswith("pushgw migrate: error: "), err
            assert sorted(os.listdir(tmp_path)) == [source.name], "something was written"
    assert failures > 100


def test_corrupt_source_leaves_an_existing_destination_alone(small_file, official_file, tmp_path, capsys):
    destination = tmp_path / "keep.db"
    assert migrate.main(["--from", str(official_file), "--to", str(destination), "--replace"]) == 0
    before = _rows(destination)
    source = tmp_path / "cut.data"
    source.write_bytes(official_file.read_bytes()[:-7])
    assert migrate.main(["--from", str(source), "--to", str(destination), "--replace"]) == 1
    assert "truncated" in capsys.readouterr().err
    assert _rows(destination) == before
    done = _run_cli("--from", str(source), "--to", str(tmp_path / "new.db"))
    assert done.returncode == 1 and "truncated" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "new.db").exists()


def test_inconsistent_groups_are_imported_with_the_later_one_quarantined(tmp_path):
    """The official unchecked stores contradicting groups; pushgw keeps both, exposes the first."""
    path = tmp_path / "inconsistent.data"
    with start_official("--push.disable-consistency-check", persistence_file=str(path)) as official:
        assert _push(official, "PUT", "/metrics/job/first", b"# TYPE c counter\nc 1\n") == 202
        assert _push(official, "PUT", "/metrics/job/second", b"# TYPE c gauge\nc 2\n") == 202
        assert official.stop() == 0
    db = tmp_path / "pushgw.db"
    assert migrate.main(["--from", str(path), "--to", str(db)]) == 0
    rows = {json.loads(r[0])[0][1]: r for r in _rows(db, quarantine=True)}
    assert rows["first"][3] is None and ("c", False) in rows["first"][4]
    assert rows["second"][3] and ("c", True) in rows["second"][4]
