"""The push URL path of a group: ``/metrics/job/<job>/<name>/<value>...``.

Values go into the path as they are (percent-encoded), except those a path
cannot carry: the empty value, a value with ``/`` (the gateway decodes
``%2F`` before routing, so it would split the path) and the dot segments
``.``/``..`` (which URL cleaning removes). Those use the ``@base64`` form:
URL-safe base64 without padding, ``=`` for the empty value, which is what
the official Pushgateway (and pushgw.grouping) decode.

Labels are ordered by name, so one group always has one path: the spool
relies on that to recognise pushes to the same group.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

BASE64_SUFFIX = "@base64"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class GroupingError(ValueError):
    """A job or label the push path cannot carry; the message says which."""


def _needs_base64(value: str) -> bool:
    return value in ("", ".", "..") or "/" in value


def _segment(name: str, value: str) -> str:
    """``name/value`` or ``name@base64/encoded`` for one path label."""
    if _needs_base64(value):
        encoded = base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii").rstrip("=")
        return f"{name}{BASE64_SUFFIX}/{encoded or '='}"
    return f"{name}/{quote(value, safe='')}"


def check_label_name(name: str) -> None:
    """Refuse names the gateway refuses in a path (and ``job``, given by --job)."""
    if not _LABEL_NAME.fullmatch(name):
        raise GroupingError(f"invalid label name {name!r}: want [a-zA-Z_][a-zA-Z0-9_]*")
    if name.startswith("__"):
        raise GroupingError(f"invalid label name {name!r}: names starting with __ are reserved")
    if name == "job":
        raise GroupingError("the job is given with --job, not as a label")


def group_path(job: str, labels: dict[str, str]) -> str:
    """The path of the group below the gateway's base URL, starting with ``/metrics``."""
    if job == "":
        raise GroupingError("the job name must not be empty")
    for name in labels:
        check_label_name(name)
    parts = ["/metrics", _segment("job", job)]
    parts += [_segment(name, labels[name]) for name in sorted(labels)]
    return "/".join(parts)
