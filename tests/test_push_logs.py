"""Every refused push logs exactly one line naming the group and the reason.

Operators find the offending pusher from the log alone, so the line must be
parseable in both formats (``--log.format=json`` and ``logfmt``), carry the
grouping key (the URL path when the path itself is bad) and the same reason
the pusher was told.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import requests

from tests.servers import start_pushgw

_LOGFMT_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line: str) -> dict[str, str]:
    """key=value pairs; quoted values use Go escapes, which JSON reads for these tests."""
    return {key: json.loads(value) if value.startswith('"') else value
            for key, value in _LOGFMT_PAIR.findall(line)}


def log_records(output: str, fmt: str) -> list[dict[str, str]]:
    lines = [line for line in output.splitlines() if line.strip()]
    if fmt == "json":
        return [json.loads(line) for line in lines]  # every line must be JSON
    return [parse_logfmt(line) for line in lines]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def remove_database(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


# (name, method, path, body, headers, status, the "group" field of the log line)
REFUSALS = [
    ("odd path", "PUT", "/metrics/job/x/odd", b"a 1\n", {}, 400, "/metrics/job/x/odd"),
    ("reserved label", "POST", "/metrics/job/x/__name__/v", b"a 1\n", {}, 400, "/metrics/job/x/__name__/v"),
    ("bad base64", "PUT", "/metrics/job@base64/!!", b"a 1\n", {}, 400, "/metrics/job@base64/!!"),
    ("parse error", "PUT", "/metrics/job/parse/instance/i", b"a{b=\n", {}, 400, '{job="parse",instance="i"}'),
    ("bad TTL", "PUT", "/metrics/job/ttl", b"a 1\n", {"Pushgateway-TTL": "soon"}, 400, '{job="ttl"}'),
    ("inconsistent", "PUT", f"/metrics/job/clash/path@base64/{b64('/a b')}", b"# TYPE shared counter\nshared 2\n",
     {}, 400, '{job="clash",path="/a b"}'),
]


@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_each_refused_push_logs_one_line_with_group_and_reason(tmp_path, fmt):
    db = tmp_path / "pushgw.db"
    with start_pushgw(f"--log.format={fmt}", f"--persistence.file={db}") as gw:
        assert requests.put(gw.url + "/metrics/job/owner", data=b"# TYPE shared gauge\nshared 1\n").status_code == 200
        before = len(gw.output().splitlines())
        answers = {}
        for name, method, path, body, headers, status, _ in REFUSALS:
            r = requests.request(method, gw.url + path, data=body, headers=headers, timeout=5)
            assert r.status_code == status, (name, r.text)
            answers[name] = r.text.strip()
        remove_database(db)  # the disk "fails": the next push cannot be made durable
        r = requests.put(gw.url + "/metrics/job/disk", data=b"d 1\n", timeout=5)
        assert r.status_code == 503
        answers["disk"] = r.text.strip()
        output = "\n".join(gw.output().splitlines()[before:])

    records = log_records(output, fmt)
    expected = [(name, group) for name, *_, group in REFUSALS] + [("disk", '{job="disk"}')]
    for name, group in expected:
        lines = [rec for rec in records if rec.get("group") == group]
        assert len(lines) == 1, (name, group, output)
        line = lines[0]
        assert line["msg"] == "push refused" and line["reason"], line
        assert line["err"] == answers[name], (name, line)  # the reason the pusher got
        assert line["level"] in ("info", "error") and line["method"] in ("PUT", "POST")
    assert not [rec for rec in records if rec.get("group") == '{job="owner"}']  # accepted: silent
    inconsistent = next(rec for rec in records if rec.get("group") == '{job="clash",path="/a b"}')
    assert inconsistent["level"] == "error" and inconsistent["reason"] == "inconsistent"
    disk = next(rec for rec in records if rec.get("group") == '{job="disk"}')
    assert disk["level"] == "error" and disk["reason"] == "persistence"
