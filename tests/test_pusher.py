"""``pushgw push`` and ``pushgw exec``: the client for cron jobs and scripts.

Everything runs the real command (``python -m pushgw push|exec``) against
real servers on 127.0.0.1: pushgw and the official Pushgateway (compared on
their /metrics), pushgw started late on a reserved port (the spool), a tiny
HTTP server of the test's own that answers 503 then 200, and a socket that
listens but never answers.
"""

from __future__ import annotations

import gzip
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from servers import REPO_ROOT, ServerProcess, free_port, http_request
from test_webconfig import auth, client_context, pki, users_yaml, write_config  # noqa: F401 (fixtures)

from pushgw.exposition.text_parser import parse_text
from pushgw.grouping import BASE64_SUFFIX, parse_grouping_labels
from pushgw.pusher.path import GroupingError, group_path
from pushgw.pusher.push import Push
from pushgw.pusher.spool import Spool, covers

CLI_TIMEOUT = 30
SERVER_FAMILIES = ("push_time_seconds", "push_failure_time_seconds")
OWN_PREFIXES = ("pushgateway_", "process_", "python_", "go_")
HEAVY_MODULES = ("starlette", "uvicorn", "aiosqlite", "sqlite3", "_sqlite3", "prometheus_client",
                 "orjson", "yaml", "pushgw.config", "pushgw.gateway", "pushgw.storage",
                 "pushgw.handler", "pushgw.app", "pushgw.server")


def cli(*args: str, input: bytes | None = None, timeout: float = CLI_TIMEOUT,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m pushgw ARGS`` to its end, with a clean PUSHGW_* environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGW_")}
    return subprocess.run([sys.executable, "-m", "pushgw", *args], input=input or b"",
                          capture_output=True, timeout=timeout, cwd=REPO_ROOT,
                          env={**clean, **(env or {})})


def scrape(server) -> dict[tuple[str, frozenset], float]:
    """The pushed series of ``/metrics``: (name, labels) -> value, gateway's own families left out."""
    status, _, body = http_request("GET", server.url + "/metrics")
    assert status == 200
    result = {}
    for family in parse_text(body).values():
        if family.name.startswith(OWN_PREFIXES):
            continue
        for metric in family.metrics:
            result[(family.name, frozenset(metric.labels.items()))] = (
                metric.value if family.type in ("gauge", "counter", "untyped") else metric.count)
    return result


def requests_served(server, methods=("put", "post", "delete")) -> int:
    """How many pushes/deletes pushgw answered (its pushgateway_http_requests_total)."""
    status, _, body = http_request("GET", server.url + "/metrics")
    families = parse_text(body)
    return int(sum(m.value for m in families["pushgateway_http_requests_total"].metrics
                   if m.labels["method"] in methods))


def start_pushgw_on(port: int) -> ServerProcess:
    """pushgw on a port chosen before it starts (the pushes went there while it was down)."""
    argv = [sys.executable, "-m", "pushgw", f"--web.listen-address=127.0.0.1:{port}"]
    return ServerProcess(argv, port, name="pushgw", cwd=REPO_ROOT,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"}).start()


def group(job: str, **labels: str) -> frozenset:
    return frozenset({"job": job, "instance": "", **labels}.items())


# --- the grouping path -----------------------------------------------------------------

def decode_path(path: str) -> dict[str, str]:
    """What pushgw's push handler makes of a path (same steps as pushgw/handler/push.py)."""
    rest = unquote(path).removeprefix("/metrics/job")
    is_b64 = rest.startswith(BASE64_SUFFIX)
    rest = rest.removeprefix(BASE64_SUFFIX)
    job, slash, labels = rest[1:].partition("/")
    return parse_grouping_labels(job, is_b64, slash + labels)


@pytest.mark.parametrize("job, labels", [
    ("plain", {}),
    ("a/b", {"instance": ""}),
    ("x", {"path": "/var/tmp", "empty": "", "dot": ".", "dots": "..", "sp": "a b?#%&=+é"}),
    ("..", {"instance": "host:9100", "u": "日本"}),
])
def test_group_path_round_trips_through_pushgw_grouping(job, labels):
    path = group_path(job, labels)
    assert decode_path(path) == {"job": job, **labels}
    assert path == group_path(job, dict(reversed(labels.items()))), "one group, one path"


def test_group_path_uses_base64_only_where_needed():
    assert group_path("backup", {"instance": "db1"}) == "/metrics/job/backup/instance/db1"
    assert group_path("a/b", {"i": ""}) == "/metrics/job@base64/YS9i/i@base64/="
    for name in ("__x", "job", "1a", "a-b"):
        with pytest.raises(GroupingError):
            group_path("j", {name: "v"})
    with pytest.raises(GroupingError):
        group_path("", {})


# --- the spool's replacement rule -------------------------------------------------------

def _push(method, families=(), path="/metrics/job/j", created=0.0, body=b""):
    return Push(method, "http://g:9091", path, body, None, tuple(families), created)


@pytest.mark.parametrize("older, newer, replaced", [
    (_push("PUT", ["a"]), _push("PUT", ["b"]), True),
    (_push("POST", ["a"]), _push("DELETE"), True),
    (_push("DELETE"), _push("PUT", ["a"]), True),
    (_push("POST", ["a", "b"]), _push("POST", ["a", "b", "c"]), True),
    (_push("POST", ["a", "s"]), _push("POST", ["a", "f"]), False),  # last success, then a failure
    (_push("PUT", ["a", "b"]), _push("POST", ["a", "b"]), False),  # the PUT removed other families
    (_push("DELETE"), _push("POST", ["a"]), False),
    (_push("PUT", ["a"]), _push("PUT", ["a"], path="/metrics/job/k"), False),  # another group
])
def test_spool_replacement_rule(older, newer, replaced):
    assert covers(newer, older) is replaced


def test_spool_prune_keeps_order_and_drops_old_and_replaced(tmp_path):
    spool, said = Spool(tmp_path / "spool"), []
    now = time.time()
    spool.add(_push("PUT", ["a"], created=now - 100_000, body=b"a 0\n"))  # too old
    spool.add(_push("POST", ["a", "s"], created=now - 30, body=b"a 1\ns 1\n"))
    spool.add(_push("POST", ["a", "f"], created=now - 20, body=b"a 2\nf 1\n"))
    spool.add(_push("POST", ["a", "s"], created=now - 10, body=b"a 3\ns 2\n"))
    spool.add(_push("PUT", ["z"], path="/metrics/job/other", created=now - 5))
    kept = spool.prune(max_age=3600, say=said.append)
    assert [e.push.body for e in kept] == [b"a 2\nf 1\n", b"a 3\ns 2\n", b""]
    assert len(said) == 1 and "older than --spool-max-age" in said[0]
    assert sorted(p.name for p in (tmp_path / "spool").iterdir() if p.suffix == ".push") == \
        [e.file.name for e in kept]


# --- pushgw and the official, side by side ----------------------------------------------

def normalized(series: dict, t0: float, t1: float) -> dict:
    """Values that differ between runs (times, durations) checked for range, then masked."""
    result = {}
    for (name, labels), value in series.items():
        if name in SERVER_FAMILIES or name.endswith("_timestamp_seconds"):
            assert t0 - 1 <= value <= t1 + 1 or (name, value) == ("push_failure_time_seconds", 0), \
                (name, labels, value)
            value = "time"
        elif name.endswith("_duration_seconds"):
            assert 0 <= value < t1 - t0 + 1, (name, value)
            value = "duration"
        result[(name, labels)] = value
    return result


def run_cli_scenario(server, tmp_path: Path) -> dict:
    gw = ["--gateway", server.url]
    nightly = [*gw, "--job", "nightly/etl", "--label", "path=/var/tmp", "-l", "host=db 1"]
    body = (b"# TYPE rows gauge\nrows{table=\"t\"} 42\n# TYPE runs counter\nruns 7\n"
            b"# TYPE lat histogram\nlat_bucket{le=\"1\"} 2\nlat_bucket{le=\"+Inf\"} 3\n"
            b"lat_sum 2.5\nlat_count 3\n")
    assert cli("push", *nightly, "-", input=body).returncode == 0
    assert cli("push", *nightly, "--add", input=b"rows{table=\"t\"} 43\n").returncode == 0
    assert cli("push", *gw, "--job", "gz", "--gzip", "--ttl", "1h", input=b"zipped 1\n").returncode == 0
    assert cli("push", *gw, "--job", "gone", "-l", "instance=a", input=b"gone 1\n").returncode == 0
    assert cli("push", *gw, "--job", "gone", "-l", "instance=a", "--delete").returncode == 0
    metrics_file = tmp_path / f"backup-{server.port}.prom"
    ok = cli("exec", *gw, "--job", "backup", "--metrics-file", str(metrics_file), "--",
             "sh", "-c", f"echo done; printf 'backup_bytes 123\\n' > {metrics_file}")
    assert (ok.returncode, ok.stdout) == (0, b"done\n"), ok.stderr
    failed = cli("exec", *gw, "--job", "backup", "--", "sh", "-c", "echo oops >&2; exit 3")
    assert (failed.returncode, failed.stderr) == (3, b"oops\n")
    other = cli("exec", *gw, "--job", "report", "--prefix", "cron", "--", "true")
    assert other.returncode == 0, other.stderr
    return scrape(server)


def test_push_delete_exec_same_on_pushgw_and_official(clean_pushgw, clean_official, tmp_path):
    t0 = time.time()
    got = {name: run_cli_scenario(server, tmp_path)
           for name, server in (("pushgw", clean_pushgw), ("official", clean_official))}
    t1 = time.time()
    ours, theirs = (normalized(got[name], t0, t1) for name in ("pushgw", "official"))
    assert ours == theirs
    nightly = group("nightly/etl", path="/var/tmp", host="db 1")
    backup = group("backup")
    assert ours[("rows", nightly | {("table", "t")})] == 43
    assert ours[("runs", nightly)] == 7 and ours[("lat", nightly)] == 3
    assert ours[("zipped", group("gz"))] == 1
    assert not any(name == "gone" for name, _ in ours)
    assert ours[("job_exit_code", backup)] == 3
    assert ours[("backup_bytes", backup)] == 123  # from the success run's --metrics-file: kept by POST
    assert {"job_last_success_timestamp_seconds", "job_last_failure_timestamp_seconds",
            "job_last_run_timestamp_seconds", "job_duration_seconds"} <= {n for n, g in ours if g == backup}
    assert ("cron_last_success_timestamp_seconds", group("report")) in ours
    # The failure came after the success: both timestamps are there, in that order.
    assert got["pushgw"][("job_last_failure_timestamp_seconds", backup)] > \
        got["pushgw"][("job_last_success_timestamp_seconds", backup)]


# --- refusals, retries, timeouts --------------------------------------------------------

def test_malformed_body_fails_before_any_connection(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        proc = cli("push", "--gateway", f"http://127.0.0.1:{port}", "--job", "j",
                   input=b"ok 1\nbad{ 2\n")
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert proc.returncode == 2
    assert b"<stdin>: text format parsing error in line 2" in proc.stderr


def test_400_is_not_retried_and_its_message_shown(clean_pushgw):
    before = requests_served(clean_pushgw)
    proc = cli("push", "--gateway", clean_pushgw.url, "--job", "j", "-v", input=b"stamped 1 1000\n")
    assert proc.returncode == 3, proc.stderr
    assert b"400 Bad Request" in proc.stderr and b"must not have timestamps" in proc.stderr
    assert b"retrying" not in proc.stderr
    assert requests_served(clean_pushgw) - before == 1


class ScriptedHandler(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next (status, headers) of the server's script."""

    def do_PUT(self):
        server = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server.seen.append((self.command, self.path, body, time.monotonic(), dict(self.headers)))
        status, headers = server.script.pop(0) if server.script else (200, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted_server():
    """A real HTTP server on loopback that answers as its ``script`` says."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ScriptedHandler)
    server.script, server.seen = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_503_then_200_is_retried_honouring_retry_after(scripted_server):
    scripted_server.script = [(503, {"Retry-After": "1"}), (200, {})]
    url = f"http://127.0.0.1:{scripted_server.server_port}"
    proc = cli("push", "--gateway", url, "--job", "j", "-l", "path=/x", "-v", input=b"a 1\n")
    assert proc.returncode == 0, proc.stderr
    assert b"503" in proc.stderr and b"retrying" in proc.stderr
    (m1, p1, b1, t1, _), (m2, p2, b2, t2, _) = scripted_server.seen
    assert (m1, p1, b1) == (m2, p2, b2) == ("PUT", "/metrics/job/j/path@base64/L3g", b"a 1\n")
    assert t2 - t1 >= 0.95, "Retry-After: 1 was not honoured"


def test_headers_bearer_token_gzip_ttl_and_pushgw_url(scripted_server, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    url = f"http://127.0.0.1:{scripted_server.server_port}/gw/"
    proc = cli("push", "--job", "j", "--add", "--bearer-token-file", str(token), "--gzip",
               "--ttl", "90", input=b"a 1\n", env={"PUSHGW_URL": url})
    assert proc.returncode == 0, proc.stderr
    ((method, path, body, _, headers),) = scripted_server.seen
    assert (method, path, gzip.decompress(body)) == ("POST", "/gw/metrics/job/j", b"a 1\n")
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["Content-Encoding"] == "gzip" and headers["Pushgateway-TTL"] == "1m30s"
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_tls_client_certificate_and_basic_auth(pki, users_yaml, make_pushgw, tmp_path):
    config = write_config(pki["dir"], users_yaml + f"""
tls_server_config:
  cert_file: {pki['server_cert']}
  key_file: {pki['server_key']}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki['ca']}
""", "pusher.yml")
    gw = make_pushgw(f"--web.config.file={config}", scheme="https",
                     ready_context=client_context(pki, "client"), ready_headers=auth("alice"))
    tls = ["--gateway", gw.url, "--ca-file", pki["ca"], "--cert-file", pki["client_cert"],
           "--key-file", pki["client_key"], "--retries", "0"]
    password = tmp_path / "password"
    password.write_text("alice-pw\n")
    assert cli("push", *tls, "--job", "file", "--user", "alice", "--password-file", str(password),
               input=b"a 1\n").returncode == 0
    assert cli("push", *tls, "--job", "env", "--user", "alice", input=b"a 2\n",
               env={"PUSHGW_PASSWORD": "alice-pw"}).returncode == 0
    wrong = cli("push", *tls, "--job", "wrong", "--user", "alice", input=b"a 3\n",
                env={"PUSHGW_PASSWORD": "nope"})
    assert wrong.returncode == 3 and b"401" in wrong.stderr
    no_password = cli("push", *tls, "--job", "x", "--user", "alice", input=b"a 4\n")
    assert no_password.returncode == 2 and b"PUSHGW_PASSWORD" in no_password.stderr
    no_cert = cli("push", "--gateway", gw.url, "--ca-file", pki["ca"], "--retries", "0", "--job", "x",
                  "--user", "alice", "--password-file", str(password), input=b"a 5\n")
    assert no_cert.returncode == 4
    bad_ca = cli("push", *tls, "--ca-file", str(password), "--job", "x", input=b"a 6\n")
    assert bad_ca.returncode == 2 and b"cannot use the TLS files" in bad_ca.stderr
    status, _, body = http_request_tls(gw.url + "/metrics", client_context(pki, "client"), auth("alice"))
    assert status == 200
    assert b'a{instance="",job="file"} 1' in body and b'a{instance="",job="env"} 2' in body
    assert b'job="wrong"' not in body


def http_request_tls(url, context, headers):
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context,
                                timeout=5) as response:
        return response.status, response.headers, response.read()


def test_retry_after_beyond_the_bound_gives_up_at_once(scripted_server):
    scripted_server.script = [(429, {"Retry-After": "60"})]
    url = f"http://127.0.0.1:{scripted_server.server_port}"
    start = time.monotonic()
    proc = cli("push", "--gateway", url, "--job", "j", "--retry-max-time", "5s", input=b"a 1\n")
    assert time.monotonic() - start < 4
    assert proc.returncode == 4 and b"429" in proc.stderr
    assert len(scripted_server.seen) == 1


def test_a_gateway_that_never_answers_costs_at_most_the_bound(tmp_path):
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:  # accepts, never replies
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        proc = cli("exec", "--gateway", url, "--job", "j", "--timeout", "0.5s",
                   "--retry-max-time", "1.5s", "--", "sh", "-c", "exit 7")
        elapsed = time.monotonic() - start
    assert proc.returncode == 7
    assert elapsed < 1.5 + 1.5, f"exec took {elapsed:.1f}s"
    assert b"no answer within" in proc.stderr


# --- signals -----------------------------------------------------------------------------

def wait_for_file(marker: Path, proc: subprocess.Popen, timeout: float = 10) -> None:
    """Until the command run by ``pushgw exec`` has created ``marker``."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the command never ran"
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_is_forwarded_and_reported(clean_pushgw, tmp_path, signum):
    marker = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pushgw", "exec", "--gateway", clean_pushgw.url, "--job", "sig",
         "--", "sh", "-c", f"touch {marker}; exec sleep 30"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_file(marker, proc)
        time.sleep(0.1)  # sh exec's into sleep
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 128 + signum
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    series = scrape(clean_pushgw)
    assert series[("job_exit_code", group("sig"))] == 128 + signum
    assert ("job_last_failure_timestamp_seconds", group("sig")) in series


def test_sigterm_while_pushing_keeps_the_exit_code_and_spools(tmp_path):
    marker, spool = tmp_path / "ended", tmp_path / "spool"
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:  # accepts, never replies
        proc = subprocess.Popen(
            [sys.executable, "-m", "pushgw", "exec", "--gateway", f"http://127.0.0.1:{silent.getsockname()[1]}",
             "--job", "j", "--timeout", "20s", "--spool", str(spool), "--", "sh", "-c", f"touch {marker}; exit 5"],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for_file(marker, proc)
            time.sleep(0.3)  # now waiting for the gateway's answer
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 5
            assert time.monotonic() - start < 2
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            stderr = proc.stderr.read()
            proc.stdout.close()
            proc.stderr.close()
    assert b"interrupted" in stderr, stderr
    assert len(list(spool.glob("*.push"))) == 1


def test_exit_codes_signal_missing_command_bad_command_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing there: the push fails, the code stays
    opts = ["--gateway", url, "--job", "j", "--retries", "0"]
    assert cli("exec", *opts, "--", "sh", "-c", "kill -KILL $$").returncode == 128 + signal.SIGKILL
    missing = cli("exec", *opts, "--", "/nonexistent/command")
    assert missing.returncode == 127 and b"cannot run" in missing.stderr
    assert cli("exec", *opts, "--", str(REPO_ROOT / "README.md")).returncode == 126
    usage = cli("exec", "--job", "j", "--", "touch", str(tmp_path / "never"))  # no gateway
    assert usage.returncode == 125 and b"--gateway" in usage.stderr
    assert cli("exec", *opts, "--no-such-option", "--", "true").returncode == 125
    assert not (tmp_path / "never").exists()


# --- the spool -----------------------------------------------------------------------------

def test_gateway_down_then_up_loses_nothing_and_sends_nothing_twice(tmp_path):
    port = free_port()
    spool = tmp_path / "spool"
    gw = ["--gateway", f"http://127.0.0.1:{port}", "--spool", str(spool), "--retries", "0"]
    steps = [
        ("push", "--job", "state", "-", b"# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\n"),
        ("push", "--job", "state", "--add", "-", b"# TYPE x gauge\nx 2\n"),  # after the PUT, or y is lost
        ("push", "--job", "snap", "-", b"v 1\n"),
        ("push", "--job", "snap", "-", b"v 2\n"),  # replaces the first
        ("push", "--job", "tmp", "-", b"t 1\n"),
        ("push", "--job", "tmp", "--delete", None),  # replaces it: nothing of tmp is sent but the DELETE
    ]
    for step in steps:
        proc = cli(*step[:-1], *gw, input=step[-1])
        assert proc.returncode == 4 and b"spooled" in proc.stderr, proc.stderr
    assert cli("exec", *gw, "--job", "cron", "--", "true").returncode == 0
    assert cli("exec", *gw, "--job", "cron", "--", "false").returncode == 1
    assert cli("exec", *gw, "--job", "cron", "--", "true").returncode == 0  # replaces the first success
    # The first cron success is still on disk: a run prunes before it adds its own entry.
    assert len(list(spool.glob("*.push"))) == 7

    with start_pushgw_on(port) as server:
        # The next run sends the spool first, oldest first, then its own push.
        proc = cli("push", *gw, "--job", "after", "-v", input=b"after 1\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.count(b"sent spooled") == 6
        assert list(spool.glob("*.push")) == []
        assert requests_served(server) == 7
        series = scrape(server)
        assert series[("x", group("state"))] == 2 and series[("y", group("state"))] == 1
        assert series[("v", group("snap"))] == 2
        assert not any(labels == group("tmp") for _, labels in series)
        assert series[("job_exit_code", group("cron"))] == 0
        assert series[("job_last_failure_timestamp_seconds", group("cron"))] < \
            series[("job_last_success_timestamp_seconds", group("cron"))]
        assert series[("after", group("after"))] == 1
        flush = cli("push", *gw, "--flush-spool", "-v")
        assert (flush.returncode, flush.stderr) == (0, b"")
        assert requests_served(server) == 7


def test_entries_older_than_the_limit_are_dropped_with_a_message(tmp_path, clean_pushgw):
    spool = Spool(tmp_path / "spool")
    spool.add(Push("PUT", clean_pushgw.url, "/metrics/job/old", b"old 1\n", None, ("old",),
                   created=time.time() - 7200))
    spool.add(Push("PUT", clean_pushgw.url, "/metrics/job/new", b"new 1\n", None, ("new",)))
    proc = cli("push", "--gateway", clean_pushgw.url, "--spool", spool.folder.as_posix(),
               "--flush-spool", "--spool-max-age", "1h")
    assert proc.returncode == 0
    assert b"dropping PUT" in proc.stderr and b"/metrics/job/old" in proc.stderr
    names = {name for name, _ in scrape(clean_pushgw)}
    assert "new" in names and "old" not in names


def test_several_exec_runs_spool_at_once_then_two_flushes_send_each_once(tmp_path):
    port = free_port()
    spool = tmp_path / "spool"
    gw = ["--gateway", f"http://127.0.0.1:{port}", "--spool", str(spool), "--retries", "0"]
    runs = 8
    procs = [subprocess.Popen([sys.executable, "-m", "pushgw", "exec", *gw, "--job", "par",
                               "-l", f"instance=i{i}", "--", "sh", "-c", f"exit {i % 3}"],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(runs)]
    codes = [p.wait(timeout=CLI_TIMEOUT) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert codes == [i % 3 for i in range(runs)]
    assert len(list(spool.glob("*.push"))) == runs
    assert list(spool.glob(".tmp-*")) == []
    with start_pushgw_on(port) as server:
        flushers = [subprocess.Popen([sys.executable, "-m", "pushgw", "push", "--gateway", server.url,
                                      "--spool", str(spool), "--flush-spool"], cwd=REPO_ROOT)
                    for _ in range(2)]
        assert [f.wait(timeout=CLI_TIMEOUT) for f in flushers] == [0, 0]
        assert requests_served(server) == runs
        series = scrape(server)
        for i in range(runs):
            assert series[("job_exit_code", group("par", instance=f"i{i}"))] == i % 3
    assert list(spool.glob("*.push")) == []


# --- start-up ------------------------------------------------------------------------------

def test_subcommands_do_not_import_the_server():
    code = (
        "import sys, pushgw.cli as c\n"
        "c.main(['push', '--gateway', 'http://127.0.0.1:9', '--job', 'j', '--retries', '0', '/dev/null'])\n"
        "c.main(['exec', '--gateway', 'http://127.0.0.1:9', '--job', 'j', '--retries', '0', '--', 'true'])\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, cwd=REPO_ROOT)
    loaded = set(proc.stdout.split())
    assert "pushgw.pusher.exec" in loaded and "pushgw.exposition.text_parser" in loaded, proc.stderr
    heavy = sorted(m for m in loaded if m.startswith(HEAVY_MODULES))
    assert heavy == []


def test_server_command_line_is_unchanged():
    proc = subprocess.run([sys.executable, "-m", "pushgw", "--web.listen-address"],
                          capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=REPO_ROOT)
    assert proc.returncode == 1 and "pushgw: error:" in proc.stderr
    version = subprocess.run([sys.executable, "-m", "pushgw", "--version"], capture_output=True,
                             text=True, timeout=CLI_TIMEOUT, cwd=REPO_ROOT)
    assert version.returncode == 0 and "pushgw" in version.stdout + version.stderr
