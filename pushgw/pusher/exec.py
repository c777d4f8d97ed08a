"""``pushgw exec``: run a command, then report how it went.

The command inherits stdin, stdout and stderr; SIGINT and SIGTERM sent to
pushgw are passed on to it (also when they arrive before it started). Its
exit code is kept as the shell reports it: the code itself, 128+N after
signal N, 127 when the program does not exist, 126 when it cannot be run.

The report (one text body, pushed with POST so a failed run never erases
the last success) has, for the prefix ``job``:

    job_duration_seconds                 wall-clock time the command ran
    job_exit_code                        the exit code above
    job_last_run_timestamp_seconds       when it ended (Unix time)
    job_last_success_timestamp_seconds   the same, after exit code 0, or
    job_last_failure_timestamp_seconds   the same, otherwise

plus the families of ``--metrics-file`` if the command wrote it during this
run (a file left from an earlier run is ignored: stale numbers would hide
exactly the failure this is for).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from pushgw.pusher.push import Say

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PREFIX_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Coarse file systems keep mtimes in whole (or even two) seconds.
MTIME_SLACK_SECONDS = 2.0


class RunResult:
    """How the command went: its shell-style exit code, when it started and ended
    (wall clock) and how long it ran (monotonic clock)."""

    __slots__ = ("exit_code", "started", "ended", "duration")

    def __init__(self, exit_code: int, started: float, ended: float, duration: float) -> None:
        self.exit_code = exit_code
        self.started = started
        self.ended = ended
        self.duration = duration


def run_command(argv: list[str], say: Say) -> RunResult:
    """Run ``argv`` with signals forwarded; never raises for the command's own trouble."""
    child: subprocess.Popen | None = None
    pending: list[int] = []

    def forward(signum: int, _frame) -> None:
        if child is None:
            pending.append(signum)
        else:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    started, t0 = time.time(), time.monotonic()
    try:
        try:
            child = subprocess.Popen(argv)
        except FileNotFoundError as err:
            say(f"cannot run {argv[0]!r}: {err.strerror}")
            code = 127
        except OSError as err:
            say(f"cannot run {argv[0]!r}: {err.strerror or err}")
            code = 126
        else:
            for signum in pending:
                child.send_signal(signum)
            returncode = child.wait()
            code = returncode if returncode >= 0 else 128 - returncode
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return RunResult(code, started, time.time(), time.monotonic() - t0)


def check_prefix(prefix: str) -> None:
    if not PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"invalid --prefix {prefix!r}: want a metric name prefix [a-zA-Z_:][a-zA-Z0-9_:]*")


def report_body(result: RunResult, prefix: str) -> tuple[bytes, list[str]]:
    """The text exposition of the run's own metrics, and their names."""
    outcome = "success" if result.exit_code == 0 else "failure"
    rows = [
        ("duration_seconds", "Wall-clock seconds the last run of the job took.", result.duration),
        ("exit_code", "Exit code of the last run (128+N: killed by signal N).", result.exit_code),
        ("last_run_timestamp_seconds", "When the last run ended, in Unix time.", result.ended),
        (f"last_{outcome}_timestamp_seconds",
         f"When the last {'successful' if outcome == 'success' else 'failed'} run ended, in Unix time.",
         result.ended),
    ]
    lines, names = [], []
    for suffix, help_text, value in rows:
        name = f"{prefix}_{suffix}"
        names.append(name)
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value!r}"]
    return ("\n".join(lines) + "\n").encode("utf-8"), names


def metrics_file_body(path: str, result: RunResult, own: set[str], say: Say) -> tuple[bytes, list[str]]:
    """The file's text and family names if it may be added to the report; else empty."""
    try:
        if os.stat(path).st_mtime < result.started - MTIME_SLACK_SECONDS:
            say(f"--metrics-file {path} was not written by this run: not pushed")
            return b"", []
        with open(path, "rb") as f:
            body = f.read()
    except FileNotFoundError:
        say(f"--metrics-file {path} does not exist: only the job's own metrics are pushed")
        return b"", []
    except OSError as err:
        say(f"cannot read --metrics-file {path}: {err}")
        return b"", []
    from pushgw.exposition.text_parser import ParseError, parse_text  # only with a metrics file

    try:
        families = parse_text(body)
    except ParseError as err:
        say(f"--metrics-file {path}: {err}: not pushed")
        return b"", []
    clash = sorted(own & families.keys())
    if clash:
        say(f"--metrics-file {path} has families of the job's own report ({', '.join(clash)}): not pushed")
        return b"", []
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return body, list(families)

