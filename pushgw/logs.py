"""Logging to stderr in the official Pushgateway's formats (logfmt or JSON).

The official logs through promslog in go-kit style, one record per line:

    ts=2026-11-21T12:00:00.000Z level=info caller=cli.py:42 msg="starting pushgw" version=0.1.0

Extra key/values come from the standard ``extra={...}`` argument of logging
calls. An exception becomes an ``exc`` field holding the traceback, escaped
onto the same line.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any

import orjson

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO,
          "warn": logging.WARNING, "error": logging.ERROR}

# Attributes every LogRecord has; anything else on a record came from extra=.
# uvicorn adds "color_message" (the message with ANSI colours): never shown.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}
_RESERVED = {"ts", "level", "caller", "msg", "exc"}  # clashing extras get "logged_"
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\a": "\\a", "\b": "\\b", "\f": "\\f",
            "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _level_name(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    return "info" if levelno >= logging.INFO else "debug"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record as ordered key/values: ts, level, caller, msg, extras, exc."""
    ts = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
    fields: dict[str, Any] = {
        "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
        "level": _level_name(record.levelno),
        "caller": f"{record.filename}:{record.lineno}",
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD:
            fields["logged_" + key if key in _RESERVED else key] = value
    if record.exc_info and record.exc_info[0] is not None:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


def _text(value: Any) -> str:
    """A value as Go's slog prints it (bools lower-case, nil as <nil>)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, datetime.timedelta):
        from pushgw.config import format_duration
        return format_duration(value.total_seconds())
    return str(value)


def logfmt_quote(text: str) -> str:
    """Quote like slog's text handler: only when empty or containing a space,
    '=', '"', a control or a non-printable character; Go string escapes."""
    if text and text.isprintable() and not any(c in ' ="' or c.isspace() for c in text):
        return text
    out = []
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c == " " or c.isprintable():
            out.append(c)
        elif ord(c) < 0x80:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


class LogfmtFormatter(logging.Formatter):
    """One logfmt line per record."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{logfmt_quote(str(k))}={logfmt_quote(_text(v))}"
                        for k, v in _fields(record).items())


class JSONFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(_fields(record), default=_text,
                            option=orjson.OPT_NON_STR_KEYS).decode()


class _Handler(logging.StreamHandler):
    """Marks the handler setup_logging installed, so a second call replaces it."""


def setup_logging(level: str, fmt: str) -> None:
    """Send all logging (pushgw's and uvicorn's) to stderr in fmt ("logfmt" or
    "json") at level ("debug", "info", "warn", "error"). uvicorn's access log
    is silenced, because the official does not log requests.

    uvicorn must be started with log_config=None (and access_log=False), or
    it installs its own handlers over these."""
    handler = _Handler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    for name in ("pushgw", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
