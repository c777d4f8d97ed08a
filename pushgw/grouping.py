"""Grouping keys: decoding them from push URL paths, and naming them.

A group is identified by its grouping labels (``job`` plus the label pairs of
the URL path). The rules follow the official Pushgateway: ``@base64`` after a
name marks a URL-safe base64 value (padding optional, ``=`` alone for the empty
value), label names must be valid and not reserved (``__`` prefix), and an odd
number of path components is an error.

With ``--push.enable-utf8-names`` a label name may be written with the
``values`` escaping (``U__my_2e_label`` for ``my.label``); it is unescaped and
then only has to be non-empty, valid UTF-8 and unreserved. Without the flag,
names are taken literally and must be legacy label names.
"""

from __future__ import annotations

import base64
import binascii
import re

from pushgw.names import Escaping, is_utf8_name, unescape_name

BASE64_SUFFIX = "@base64"
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

GroupKey = tuple[tuple[str, str], ...]


class GroupingError(ValueError):
    """A grouping key in a URL path that cannot be accepted (a 400)."""


def decode_base64(value: str) -> str:
    """Decode URL-safe base64, ignoring trailing ``=`` padding as the official does."""
    raw = value.rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9_-]*", raw) or len(raw) % 4 == 1:
        raise GroupingError(f"illegal base64 data in {value!r}")
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise GroupingError(f"illegal base64 data in {value!r}: {err}") from None


def parse_grouping_labels(
    job: str, job_is_base64: bool, labels_path: str, utf8_names: bool = False
) -> dict[str, str]:
    """Turn the decoded ``<job>`` segment and the ``/name/value...`` rest into labels.

    ``labels_path`` is what follows the job segment, starting with ``/`` (or
    empty); ``utf8_names`` is ``--push.enable-utf8-names``. Raises
    GroupingError with the message the client gets.
    """
    if job_is_base64:
        try:
            job = decode_base64(job)
        except GroupingError as err:
            raise GroupingError(f"invalid base64 encoding in job name {job!r}: {err}") from None
    labels = _split_labels(labels_path, utf8_names)
    if job == "":
        raise GroupingError("job name is required")
    labels["job"] = job
    return labels


def _split_labels(path: str, utf8_names: bool) -> dict[str, str]:
    result: dict[str, str] = {}
    if len(path) <= 1:
        return result
    components = path[1:].split("/")
    if len(components) % 2:
        raise GroupingError(f"odd number of components in label string {path!r}")
    for name, value in zip(components[::2], components[1::2]):
        plain_name = name.removesuffix(BASE64_SUFFIX)
        if utf8_names:
            label = unescape_name(plain_name, Escaping.VALUES)
            # The official checks the reserved prefix on the escaped form only
            # (and lets its consistency check refuse "U______x", i.e. "__x").
            valid = is_utf8_name(label) and not label.startswith("__")
        else:
            label = plain_name
            valid = LABEL_NAME_RE.fullmatch(label) is not None
        if not valid or plain_name.startswith("__"):
            raise GroupingError(f"improper label name {plain_name!r}")
        if name != plain_name:
            try:
                value = decode_base64(value)
            except GroupingError as err:
                raise GroupingError(
                    f"invalid base64 encoding for label {plain_name}={value!r}: {err}"
                ) from None
        result[label] = value
    return result


def group_key(labels: dict[str, str]) -> GroupKey:
    """The hashable, order-independent identity of a group."""
    return tuple(sorted(labels.items()))


def format_group(labels: dict[str, str]) -> str:
    """``{job="x",instance="y"}`` for log lines and messages (job first, as the official shows)."""
    ordered = sorted(labels.items(), key=lambda kv: (kv[0] != "job", kv[0]))
    inner = ",".join(f'{name}="{value}"' for name, value in ordered)
    return "{" + inner + "}"
