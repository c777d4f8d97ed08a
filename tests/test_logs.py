"""Log lines must be one per record and parseable like the official's."""

from __future__ import annotations

import datetime
import logging
import re

import orjson
import pytest

from pushgw.logs import JSONFormatter, LogfmtFormatter, logfmt_quote, setup_logging


def make_record(msg: str = "starting pushgw", level: int = logging.INFO,
                extra: dict | None = None, exc: bool = False) -> logging.LogRecord:
    """A record as logger.log(level, msg, extra=extra, exc_info=exc) creates it."""
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            import sys
            exc_info = sys.exc_info()
    record = logging.getLogger("pushgw.test").makeRecord(
        "pushgw.test", level, "/src/pushgw/cli.py", 42, msg, (), exc_info, extra=extra)
    record.created = datetime.datetime(2026, 11, 21, 12, 0, 0, 123456,
                                       tzinfo=datetime.timezone.utc).timestamp()
    return record


@pytest.mark.parametrize("value, expected", [
    ("plain", "plain"),
    ("0.1.0", "0.1.0"),
    ("a\\b", "a\\b"),  # slog leaves a lone backslash unquoted
    ("", '""'),
    ("two words", '"two words"'),
    ("k=v", '"k=v"'),
    ('a"b', '"a\\"b"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("line1\nline2", '"line1\\nline2"'),
    ("tab\there", '"tab\\there"'),
    ("bell\x07", '"bell\\a"'),
    ("ctl\x01", '"ctl\\x01"'),
    ("a\\b c", '"a\\\\b c"'),
    ("nbsp\u00a0x", '"nbsp\\u00a0x"'),
    ("grüße", "grüße"),
])
def test_logfmt_quote(value: str, expected: str) -> None:
    assert logfmt_quote(value) == expected


def test_logfmt_line_layout() -> None:
    line = LogfmtFormatter().format(make_record(extra={"version": "0.1.0"}))
    assert line == ('ts=2026-11-21T12:00:00.123Z level=info caller=cli.py:42 '
                    'msg="starting pushgw" version=0.1.0')


@pytest.mark.parametrize("level, name", [
    (logging.DEBUG, "debug"), (logging.INFO, "info"), (logging.WARNING, "warn"),
    (logging.ERROR, "error"), (logging.CRITICAL, "error"),
])
def test_level_names_are_promslog_ones(level: int, name: str) -> None:
    assert f" level={name} " in LogfmtFormatter().format(make_record(level=level))


def test_logfmt_extra_fields_and_value_forms() -> None:
    line = LogfmtFormatter().format(make_record(extra={
        "file": "/tmp/a b", "ok": True, "n": 3, "none": None,
        "interval": datetime.timedelta(minutes=5), "level": "clash",
    }))
    assert line.endswith(' file="/tmp/a b" ok=true n=3 none=<nil> interval=5m0s logged_level=clash')


def test_exception_stays_on_one_logfmt_line() -> None:
    line = LogfmtFormatter().format(make_record(msg="persist failed", level=logging.ERROR, exc=True))
    assert "\n" not in line
    match = re.search(r' exc="(.*)"$', line)
    assert match, line
    assert "Traceback" in match.group(1) and "ValueError: boom\\nsecond line" in match.group(1)


def test_json_line() -> None:
    line = JSONFormatter().format(make_record(extra={"file": "a b", "ok": False, "n": 1.5},
                                              level=logging.WARNING))
    assert "\n" not in line
    assert orjson.loads(line) == {
        "ts": "2026-11-21T12:00:00.123Z", "level": "warn", "caller": "cli.py:42",
        "msg": "starting pushgw", "file": "a b", "ok": False, "n": 1.5,
    }


def test_json_exception_and_odd_values() -> None:
    line = JSONFormatter().format(make_record(exc=True, extra={"err": OSError("disk full"),
                                                               "every": datetime.timedelta(seconds=90)}))
    fields = orjson.loads(line)
    assert "\n" not in line
    assert fields["err"] == "disk full" and fields["every"] == "1m30s"
    assert fields["exc"].startswith("Traceback") and "ValueError: boom" in fields["exc"]


def test_setup_logging_writes_to_stderr_at_level(capsys: pytest.CaptureFixture[str]) -> None:
    """Also checks uvicorn's loggers join in and its access log stays silent."""
    setup_logging("warn", "logfmt")
    setup_logging("info", "json")  # a second call replaces, never duplicates
    try:
        logging.getLogger("pushgw.x").debug("hidden")
        logging.getLogger("pushgw.x").info("shown", extra={"k": "v"})
        logging.getLogger("uvicorn.error").info("Uvicorn running",
                                                extra={"color_message": "\x1b[1mUvicorn\x1b[0m"})
        logging.getLogger("uvicorn.access").info("GET / 200")
        err = capsys.readouterr().err
        lines = [orjson.loads(line) for line in err.splitlines()]
        assert [(f["msg"], f.get("k")) for f in lines] == [("shown", "v"), ("Uvicorn running", None)]
        assert "color_message" not in lines[1]
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if type(h).__name__ == "_Handler"]:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        logging.getLogger("uvicorn.access").disabled = False
