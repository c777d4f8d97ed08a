"""Metric and label names: which are valid, and how they are escaped.

Two validation schemes, as in prometheus/common's ``model``:

- legacy: metric names ``[a-zA-Z_:][a-zA-Z0-9_:]*``, label names
  ``[a-zA-Z_][a-zA-Z0-9_]*``;
- UTF-8 (``--push.enable-utf8-names``): any non-empty, valid UTF-8 string.

A name that is not legacy-valid has to be escaped for a scraper that cannot
read quoted names. The scraper says which scheme it wants with the
``escaping`` parameter of its ``Accept`` header; ``allow-utf-8`` means no
escaping at all. Without the parameter the newest official Pushgateway
(prometheus/common v0.69, ``model.NameEscapingScheme``) uses ``underscores``.

The ``values`` scheme (``U__`` prefix, ``_<hex>_`` code points, ``__`` for
``_``) is also how UTF-8 label names are written in push URL paths.
"""

from __future__ import annotations

import re
from enum import Enum

__all__ = [
    "DEFAULT_ESCAPING",
    "Escaping",
    "escape_name",
    "escaping_from_param",
    "is_legacy_label_name",
    "is_legacy_metric_name",
    "is_utf8_name",
    "unescape_name",
]

_LEGACY_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_VALUES_PREFIX = "U__"
_MAX_HEX_DIGITS = 5  # Go's UnescapeName gives up at the sixth digit


class Escaping(Enum):
    """The escaping schemes, by the value of the ``escaping`` media-type parameter."""

    ALLOW_UTF8 = "allow-utf-8"  # no escaping: names go out quoted
    UNDERSCORES = "underscores"
    DOTS = "dots"
    VALUES = "values"


DEFAULT_ESCAPING = Escaping.UNDERSCORES
_BY_PARAM = {e.value: e for e in Escaping}


def escaping_from_param(value: str | None) -> Escaping | None:
    """The scheme an ``escaping=`` parameter names; None if absent or unknown (Go ignores those)."""
    return _BY_PARAM.get(value) if value else None


def is_legacy_metric_name(name: str) -> bool:
    return _LEGACY_METRIC_NAME.fullmatch(name) is not None


def is_legacy_label_name(name: str) -> bool:
    return _LEGACY_LABEL_NAME.fullmatch(name) is not None


def is_utf8_name(name: str) -> bool:
    """Valid under UTF-8 validation: non-empty and valid UTF-8.

    Invalid bytes reach here as lone surrogates (decoded with surrogateescape).
    """
    if not name:
        return False
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _legacy_char(c: str, first: bool) -> bool:
    """Go's isValidLegacyRune."""
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or c == "_" or c == ":" or (
        "0" <= c <= "9" and not first
    )


def escape_name(name: str, scheme: Escaping) -> str:
    """Go's model.EscapeName: ``name`` as a scraper asking for ``scheme`` sees it."""
    if not name or scheme is Escaping.ALLOW_UTF8:
        return name
    if scheme is Escaping.DOTS:  # escapes underscores even in legacy-valid names
        out = []
        for i, c in enumerate(name):
            if c == "_":
                out.append("__")
            elif c == ".":
                out.append("_dot_")
            elif _legacy_char(c, i == 0):
                out.append(c)
            else:
                out.append("__")
        return "".join(out)
    if is_legacy_metric_name(name):
        return name
    if scheme is Escaping.UNDERSCORES:
        return "".join(c if _legacy_char(c, i == 0) else "_" for i, c in enumerate(name))
    out = [_VALUES_PREFIX]
    for i, c in enumerate(name):
        if c == "_":
            out.append("__")
        elif _legacy_char(c, i == 0):
            out.append(c)
        else:
            code = ord(c)
            if 0xD800 <= code <= 0xDFFF:  # a byte that was not valid UTF-8 (Go: U+FFFD)
                code = 0xFFFD
            out.append(f"_{code:x}_")
    return "".join(out)


def unescape_name(name: str, scheme: Escaping) -> str:
    """Go's model.UnescapeName; a name that cannot be unescaped comes back unchanged.

    Only ``values`` and ``dots`` can be undone; ``underscores`` loses information.
    """
    if not name:
        return name
    if scheme is Escaping.DOTS:
        return name.replace("_dot_", ".").replace("__", "_")
    if scheme is not Escaping.VALUES or not name.startswith(_VALUES_PREFIX):
        return name
    s = name[len(_VALUES_PREFIX):]
    n = len(s)
    out = []
    i = 0
    while i < n:
        c = s[i]
        if c != "_":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= n:
            return name  # a lone trailing underscore
        if s[i] == "_":
            out.append("_")
            i += 1
            continue
        code = 0
        digits = 0
        while True:
            if i >= n or digits > _MAX_HEX_DIGITS:
                return name  # no closing underscore, or too long for a code point
            c = s[i]
            if c == "_":
                break
            o = ord(c)
            if o >= 0x80:
                return name
            o |= 0x20  # Go lower-cases the byte this way (strconv's lower)
            if 0x30 <= o <= 0x39:
                code = code * 16 + o - 0x30
            elif 0x61 <= o <= 0x66:
                code = code * 16 + o - 0x61 + 10
            else:
                return name
            digits += 1
            i += 1
        if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            return name  # not a valid rune
        out.append(chr(code))
        i += 1  # past the closing underscore
    return "".join(out)
