"""Parser for the Prometheus text exposition format 0.0.4.

It accepts, rejects and builds exactly what the Go parser of the official
Pushgateway does (``expfmt.TextParser`` of prometheus/common v0.69 with legacy
name validation, or with UTF-8 validation under ``--push.enable-utf8-names``:
then quoted names only have to be non-empty, valid UTF-8), including its error
messages and its quirks.

Design, for speed (bodies of 10,000+ lines are normal): the body is decoded
once, then one ``findall`` over the whole body splits it into lines and
parses every strictly formatted sample line (``name{a="b",c="d"} 1.5 [ts]``,
single spaces) in C; the loop handles those inline. Other lines try two more
regexes (sample lines with extra blanks; plain HELP/TYPE lines), and anything
still left (quoted names, odd escapes, errors, ...) goes through a state
machine that reproduces Go's byte-by-byte behaviour and error text. The
regex paths only take lines they can handle exactly as the state machine
would, and hand a line over unchanged when a check fails, so error messages
always come from the state machine (tests compare both on random input).

Go's parser carries state from one line to the next (the current family,
the current metric, summary/histogram bookkeeping). Lines that start with
``{`` use that state in surprising ways; the state machine keeps it exactly.
"""

from __future__ import annotations

import re

from pushgw.model import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    SUMMARY,
    UNTYPED,
    Metric,
    MetricFamily,
    gc_paused,
)
from pushgw.names import is_utf8_name

__all__ = ["ParseError", "parse_text", "parse_values"]

_NAN = float("nan")
_INF = float("inf")
_TWO63 = 1 << 63
_TWO63F = 9223372036854775808.0
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1

# Type names Go accepts in a TYPE line (after upper-casing). Gauge
# histograms behave exactly like histograms in the text format and are
# rendered as "histogram" by Go, so they become plain histograms here.
_TYPE_WORDS = {
    "COUNTER": COUNTER,
    "GAUGE": GAUGE,
    "SUMMARY": SUMMARY,
    "UNTYPED": UNTYPED,
    "HISTOGRAM": HISTOGRAM,
    "GAUGE_HISTOGRAM": HISTOGRAM,
    "GAUGEHISTOGRAM": HISTOGRAM,
}
_PLAIN_TYPES = frozenset((COUNTER, GAUGE, UNTYPED, ""))

_LEGACY_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# What strconv.ParseFloat accepts, minus hex floats and underscores (expfmt
# rejects any token containing p, P or _). ASCII digits only, unlike float().
_FLOAT_SRC = (
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?"
    r"|[nN][aA][nN]"
)
_GO_FLOAT = re.compile(_FLOAT_SRC)
# Many value tokens joined by newlines, checked in one call.
_GO_FLOATS = re.compile(r"(?:" + _FLOAT_SRC + r")(?:\n(?:" + _FLOAT_SRC + r"))*+")
_GO_INT = re.compile(r"[+-]?[0-9]+")

# Second tier: one sample line with a legacy name, simple label syntax (blanks
# allowed wherever Go allows them) and a valid float, ending in a newline.
# Possessive quantifiers stop the name from being split ("m1" must never read
# as name "m", value "1").
_LABEL_PAIR_SRC = (
    r'[a-zA-Z_][a-zA-Z0-9_]*+[ \t]*=[ \t]*"[^"\\\n]*+(?:\\[\\"n][^"\\\n]*+)*+"'
)
_FAST_LINE = re.compile(
    r"[ \t]*([a-zA-Z_:][a-zA-Z0-9_:]*+)(?!\")[ \t]*"
    r"(\{[ \t]*(?:" + _LABEL_PAIR_SRC + r"[ \t]*,[ \t]*)*"
    r"(?:" + _LABEL_PAIR_SRC + r"[ \t]*)?\})?"
    r"[ \t]*(" + _FLOAT_SRC + r")"
    r"(?:[ \t]++([+-]?[0-9]++))?\n"
)
_FAST_PAIRS = re.compile(
    r'([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"\\\n]*(?:\\[\\"n][^"\\\n]*)*)"'
)
_FAST_HELP_TYPE = re.compile(
    r"[ \t]*#[ \t]*(HELP|TYPE)[ \t]++([a-zA-Z_:][a-zA-Z0-9_:]*+)(?!\")"
    r"[ \t]++([^\n\\ \t][^\n\\]*+)\n"
)
# The whole body in one findall: a strictly formatted sample line (single
# spaces, no blanks inside the braces) gives (name, labels, value, ts, "", "");
# any other line gives ("", "", "", "", line, "\n" or "" at the very end).
_STRICT_PAIR_SRC = (
    r'[a-zA-Z_][a-zA-Z0-9_]*+="[^"\\\n]*+(?:\\[\\"n][^"\\\n]*+)*+"'
)
_BODY = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*+)"
    r"(\{(?:" + _STRICT_PAIR_SRC + r",)*+(?:" + _STRICT_PAIR_SRC + r")?\})?"
    r" (" + _FLOAT_SRC + r")(?: ([+-]?[0-9]++))?\n"
    r"|([^\n]*+)(\n?)"
)
# Label pairs of a strictly formatted label set without backslashes.
_STRICT_PAIRS = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')
_INFINITIES = frozenset((float("inf"), float("-inf")))
_ESCAPE = re.compile(r"\\(.)", re.S)
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n"}

_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_\"")
_LABEL_CONT = _NAME_START | frozenset("0123456789")
_METRIC_START = _NAME_START | {":"}
_METRIC_CONT = _LABEL_CONT | {":"}

_GO_CHAR_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


class ParseError(ValueError):
    """A body Go's text parser would reject; str() is the client message."""

    def __init__(self, line: int, msg: str) -> None:
        self.line = line
        self.msg = msg
        super().__init__(f"text format parsing error in line {line}: {msg}")


def _unescape(c: str) -> str:
    """The character a backslash escape stands for; only \\\\, \\n and \\" exist."""
    unescaped = _ESCAPES.get(c)
    if unescaped is None:
        raise _LineError(f"invalid escape sequence '\\{_go_char(c)}'")
    return unescaped


_ESCAPES = {"\\": "\\", "n": "\n", '"': '"'}


class _LineError(Exception):
    """Raised inside a line; the caller adds the line number."""


class _Eof(Exception):
    """The input ended in the middle of a line."""


# ---------------------------------------------------------------- helpers


def _go_float(s: str) -> float | None:
    """strconv.ParseFloat as expfmt uses it; None where Go reports an error."""
    if _GO_FLOAT.fullmatch(s) is None:
        return None
    f = float(s)
    if (f == _INF or f == -_INF) and s[-1] not in "fFyY":
        return None  # overflow is a range error in Go, not infinity
    return f


def parse_values(tokens: list[str]) -> list[float] | None:
    """Sample value tokens as Go's parser reads them; None if any would be an error."""
    if not tokens:
        return []
    joined = "\n".join(tokens)
    if joined.count("\n") != len(tokens) - 1 or _GO_FLOATS.fullmatch(joined) is None:
        return None
    values = list(map(float, tokens))
    if _INF in values or -_INF in values:
        for v, s in zip(values, tokens):
            if (v == _INF or v == -_INF) and s[-1] not in "fFyY":
                return None  # overflow (see _go_float)
    return values


_BOUNDS: dict[str, float | None] = {}


def _bound(s: str) -> float | None:
    """_go_float for quantile/le label values, which repeat a lot."""
    try:
        return _BOUNDS[s]
    except KeyError:
        pass
    b = _go_float(s)
    if len(_BOUNDS) < 10_000:
        _BOUNDS[s] = b
    return b


def _go_int64(s: str) -> int | None:
    """strconv.ParseInt(s, 10, 64); None where Go reports an error."""
    if _GO_INT.fullmatch(s) is None:
        return None
    v = int(s)
    if v < _INT64_MIN or v > _INT64_MAX:
        return None
    return v


def _go_uint64(v: float) -> int:
    """Go's uint64(float64) conversion as compiled for amd64.

    Out-of-range inputs (NaN, infinities, negative values below -2^63,
    values from 2^64 on) give 2^63; other negative values wrap modulo 2^64.
    """
    if v != v:
        return _TWO63
    if v >= _TWO63F:
        y = v - _TWO63F
        if y >= _TWO63F:
            return _TWO63
        return int(y) | _TWO63
    if v < -_TWO63F:
        return _TWO63
    return int(v) & _UINT64_MASK


def _go_bytes(s: str) -> bytes:
    """The original bytes of a decoded chunk of the body."""
    return s.encode("utf-8", "surrogateescape")


def _go_quote(s: str) -> str:
    """Go's %q for a string (strconv.Quote), byte-exact for invalid UTF-8."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a raw byte that was not valid UTF-8
            out.append("\\x%02x" % (o - 0xDC00))
        elif ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _GO_CHAR_ESCAPES:
            out.append(_GO_CHAR_ESCAPES[ch])
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        elif o < 0x10000:
            out.append("\\u%04x" % o)
        else:
            out.append("\\U%08x" % o)
    out.append('"')
    return "".join(out)


def _first_byte(ch: str) -> int:
    """Go reads bytes; a multi-byte character shows up as its first byte."""
    return _go_bytes(ch)[0]


def _go_quote_byte(ch: str) -> str:
    """Go's %q for the byte Go's parser was looking at (a quoted rune)."""
    b = _first_byte(ch)
    c = chr(b)
    if c == "'" or c == "\\":
        return "'\\" + c + "'"
    if c.isprintable():
        return "'" + c + "'"
    if c in _GO_CHAR_ESCAPES:
        return "'" + _GO_CHAR_ESCAPES[c] + "'"
    if b < 0x20 or b == 0x7F:
        return "'\\x%02x'" % b
    return "'\\u%04x'" % b


def _go_char(ch: str) -> str:
    """Go's %c for the current byte."""
    return chr(_first_byte(ch))


def _type_from_word(word: str) -> str | None:
    """Go upper-cases the TYPE word (Unicode simple case mapping) first."""
    if word.isascii():
        up = word.upper()
    else:
        up = "".join(u if len(u := c.upper()) == 1 else c for c in word)
    return _TYPE_WORDS.get(up)


def _unescape_label_value(v: str) -> str:
    """Undo the three escapes the fast-path regex allows in label values."""
    return _ESCAPE.sub(lambda m: _UNESCAPED[m.group(1)], v)


def _help_text(s: str) -> str:
    """HELP is not checked for UTF-8 by Go; keep it printable and encodable."""
    if s.isascii():
        return s
    return _go_bytes(s).decode("utf-8", "replace")


def _has_invalid_utf8(s: str) -> bool:
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# ---------------------------------------------------------------- cursor


class _Cursor:
    """Byte-at-a-time reading of one line, as Go's bufio reader sees it.

    The line includes its terminating newline unless it is the last,
    unterminated line of the body; reading past the end raises _Eof.
    ``c`` is Go's ``currentByte``.
    """

    __slots__ = ("s", "i", "n", "c")

    def __init__(self, s: str) -> None:
        self.s = s
        self.i = 0
        self.n = len(s)
        self.c = ""

    def read(self) -> str:
        i = self.i
        if i >= self.n:
            raise _Eof
        c = self.s[i]
        self.c = c
        self.i = i + 1
        return c

    def skip_blanks(self) -> str:
        """Read at least one byte, then past any blanks and tabs."""
        c = self.read()
        while c == " " or c == "\t":
            c = self.read()
        return c

    def skip_blanks_if_blank(self) -> str:
        c = self.c
        if c == " " or c == "\t":
            return self.skip_blanks()
        return c

    def token_until_whitespace(self) -> str:
        """From the current byte up to a blank, tab or newline."""
        start = self.i - 1
        c = self.c
        while c != " " and c != "\t" and c != "\n":
            c = self.read()
        return self.s[start : self.i - 1]

    def skip_line(self) -> None:
        """Fast-forward over the rest of a comment line."""
        if self.c == "\n":
            return
        j = self.s.find("\n", self.i)
        if j < 0:
            raise _Eof
        self.i = j + 1
        self.c = "\n"

    def until_newline(self, escapes: bool) -> str:
        """From the current byte to the newline (HELP text, TYPE word, rest).

        With ``escapes`` the HELP escapes are decoded; without, Go still
        drops every backslash (it flags an escape it then never uses).
        """
        out: list[str] = []
        escaped = False
        c = self.c
        while True:
            if escapes and escaped:
                out.append(_unescape(c))
                escaped = False
            elif c == "\n":
                return "".join(out)
            elif c == "\\":
                escaped = True
            else:
                out.append(c)
            c = self.read()

    def name(self, metric: bool) -> str:
        """A metric or label name, possibly partly or wholly quoted."""
        c = self.c
        if c not in (_METRIC_START if metric else _NAME_START):
            return ""
        cont = _METRIC_CONT if metric else _LABEL_CONT
        out: list[str] = []
        quoted = False
        escaped = False
        while True:
            if escaped:
                out.append(_unescape(c))
                escaped = False
            elif c == '"':
                quoted = not quoted
                if not quoted:
                    self.read()
                    return "".join(out)
            elif c == "\n":
                what = "metric" if metric else "label"
                raise _LineError(
                    f"{what} name {_go_quote(''.join(out))} contains unescaped new-line"
                )
            elif c == "\\":
                escaped = True
            else:
                out.append(c)
            c = self.read()
            if not quoted and c not in cont:
                return "".join(out)

    def label_value(self) -> str:
        """The bytes after an opening quote up to the closing one."""
        out: list[str] = []
        escaped = False
        while True:
            c = self.read()
            if escaped:
                out.append(_unescape(c))
                escaped = False
            elif c == '"':
                return "".join(out)
            elif c == "\n":
                raise _LineError(
                    f"label value {_go_quote(''.join(out))} contains unescaped new-line"
                )
            elif c == "\\":
                escaped = True
            else:
                out.append(c)


# ---------------------------------------------------------------- parser


class _Parser:
    """Parser state that survives from one line to the next, as in Go."""

    def __init__(self, utf8_names: bool = False, rendered: bool = False) -> None:
        self.utf8_names = utf8_names
        self.rendered = rendered
        self.families: dict[str, MetricFamily] = {}
        self.mf: MetricFamily | None = None
        self.metric: Metric | None = None
        # Set when the current name is a summary's/histogram's _count/_sum.
        self.is_count = False
        self.is_sum = False
        # Summary/histogram grouping: labels without quantile/le, plus
        # __name__; None until the first summary/histogram line (Go: nil map).
        self.cur_labels: dict[str, str] | None = None
        self.quantile = _NAN
        self.bucket = _NAN
        self.summaries: dict[frozenset, Metric] = {}
        self.histograms: dict[frozenset, Metric] = {}
        self.hist_metrics: list[Metric] = []
        self.resolved: dict[str, tuple[MetricFamily, bool, bool]] = {}
        # Per line.
        self.in_braces = False
        self.braces_name = False

    # ------------------------------------------------------------ families

    def set_mf(self, name: str) -> None:
        """Find the family a name belongs to, creating it if needed."""
        self.is_count = False
        self.is_sum = False
        if _LEGACY_METRIC_NAME.fullmatch(name) is None and not (
            self.utf8_names and is_utf8_name(name)
        ):
            raise _LineError(f"invalid metric name {_go_quote(name)}")
        fams = self.families
        mf = fams.get(name)
        if mf is not None:
            self.mf = mf
            return
        is_count = len(name) > 6 and name.endswith("_count")
        is_sum = not is_count and len(name) > 4 and name.endswith("_sum")
        base = name[:-6] if is_count else name[:-4] if is_sum else name
        mf = fams.get(base)
        if mf is not None and mf.type == SUMMARY:
            self.mf = mf
            self.is_count = is_count
            self.is_sum = is_sum
            return
        if not is_count and not is_sum and len(name) > 7 and name.endswith("_bucket"):
            base = name[:-7]
        mf = fams.get(base)
        if mf is not None and mf.type == HISTOGRAM:
            self.mf = mf
            self.is_count = is_count
            self.is_sum = is_sum
            return
        mf = MetricFamily(name, "")
        fams[name] = mf
        self.mf = mf

    def lookup(self, name: str) -> tuple[MetricFamily | None, bool, bool]:
        """set_mf without side effects (name known to be legacy-valid).

        Found families are cached: an exact name stays exact, and a name
        that resolved to a summary/histogram can never become a family of
        its own (set_mf would resolve it the same way).
        """
        hit = self.resolved.get(name)
        if hit is not None:
            return hit
        fams = self.families
        mf = fams.get(name)
        if mf is not None:
            hit = (mf, False, False)
        else:
            is_count = len(name) > 6 and name.endswith("_count")
            is_sum = not is_count and len(name) > 4 and name.endswith("_sum")
            base = name[:-6] if is_count else name[:-4] if is_sum else name
            mf = fams.get(base)
            if mf is None or mf.type != SUMMARY:
                if not is_count and not is_sum and len(name) > 7 and name.endswith("_bucket"):
                    base = name[:-7]
                mf = fams.get(base)
                if mf is None or mf.type != HISTOGRAM:
                    return None, False, False
            hit = (mf, is_count, is_sum)
        self.resolved[name] = hit
        return hit

    def cur_type(self) -> str:
        """Go's GetType(): an unset type (or no family) reads as counter."""
        mf = self.mf
        if mf is None or not mf.type:
            return COUNTER
        return mf.type

    # ------------------------------------------------------------ values

    def take_value(self, value: float) -> None:
        """Store a sample value in the current metric (Go's readingValue)."""
        m = self.metric
        t = self.cur_type()
        if t == SUMMARY:
            if self.is_count:
                m.count = _go_uint64(value)
            elif self.is_sum:
                m.sum = value
            elif self.quantile == self.quantile:
                m.quantiles.append((self.quantile, value))
        elif t == HISTOGRAM:
            if self.is_count:
                u = _go_uint64(value)
                if value == u:
                    if not isinstance(m.count, float):
                        m.count = u
                elif value < 0:
                    raise _LineError(f"negative count for histogram {_go_quote(self.mf.name)}")
                else:
                    m.count = value
            elif self.is_sum:
                m.sum = value
            elif self.bucket == self.bucket:
                u = _go_uint64(value)
                if value == u:
                    m.buckets.append((self.bucket, u))
                elif value < 0:
                    raise _LineError(
                        f"negative bucket population for histogram {_go_quote(self.mf.name)}"
                    )
                else:
                    m.buckets.append((self.bucket, value))
        else:
            m.value = value

    def attach_metric(self) -> None:
        """Add the current metric to the current family (start of readingValue)."""
        mf = self.mf
        t = self.cur_type()
        if t == SUMMARY or t == HISTOGRAM:
            key = frozenset(self.cur_labels.items()) if self.cur_labels else frozenset()
            table = self.summaries if t == SUMMARY else self.histograms
            existing = table.get(key)
            if existing is not None:
                self.metric = existing
                return
            table[key] = self.metric
            if t == HISTOGRAM:
                self.hist_metrics.append(self.metric)
        mf.metrics.append(self.metric)

    # ------------------------------------------------------------ fast path

    def fast_sample(
        self, name: str, labels_src: str | None, value_src: str, ts_src: str | None
    ) -> bool:
        """Apply a regex-matched sample line; False if Go would report an error.

        The caller's regex has checked the float and integer syntax. Nothing
        is changed before all checks have passed, so the state machine can
        re-read the line from the same state to produce the message.
        """
        value = float(value_src)
        if value in _INFINITIES and value_src[-1] not in "fFyY":
            return False  # overflow: a range error in Go
        ts = None
        if ts_src:
            ts = int(ts_src)
            if ts < _INT64_MIN or ts > _INT64_MAX:
                return False
        pairs = _FAST_PAIRS.findall(labels_src) if labels_src else []
        if labels_src and "\\" in labels_src:
            pairs = [(k, _unescape_label_value(v)) for k, v in pairs]
        mf, is_count, is_sum = self.lookup(name)
        t = mf.type if mf is not None else ""
        if t == SUMMARY or t == HISTOGRAM:
            if not self.fast_grouped(mf, t, is_count, is_sum, pairs, value):
                return False
        else:
            labels = dict(pairs)
            if len(labels) != len(pairs) or "__name__" in labels:
                return False
            if mf is None:
                mf = MetricFamily(name, UNTYPED)
                self.families[name] = mf
            elif not t:
                mf.type = UNTYPED
            self.mf = mf
            self.is_count = self.is_sum = False
            m = Metric(labels, value)
            self.metric = m
            mf.metrics.append(m)
        if ts is not None:
            self.metric.timestamp_ms = ts
        return True

    def fast_grouped(
        self,
        mf: MetricFamily,
        t: str,
        is_count: bool,
        is_sum: bool,
        pairs: list[tuple[str, str]],
        value: float,
    ) -> bool:
        """fast_sample for a summary or histogram line (see there)."""
        special = "quantile" if t == SUMMARY else "le"
        cur_labels = {"__name__": mf.name}
        bound = _NAN
        labels: dict[str, str] = {}
        for k, v in pairs:
            if k == special:
                b = _bound(v)
                if b is None:
                    return False
                bound = b
            elif k == "__name__" or k in labels:
                return False
            else:
                labels[k] = v
                cur_labels[k] = v
        if t == HISTOGRAM and (is_count or (not is_sum and bound == bound)):
            if value < 0 and value != _go_uint64(value):
                return False  # negative count: let the state machine say so
        self.mf = mf
        self.is_count = is_count
        self.is_sum = is_sum
        self.cur_labels = cur_labels
        if t == SUMMARY:
            self.quantile = bound
            self.bucket = _NAN
        else:
            self.quantile = _NAN
            self.bucket = bound
        key = frozenset(cur_labels.items())
        table = self.summaries if t == SUMMARY else self.histograms
        metric = table.get(key)
        if metric is None:
            metric = Metric(labels)
            table[key] = metric
            if t == HISTOGRAM:
                self.hist_metrics.append(metric)
            mf.metrics.append(metric)
        self.metric = metric
        self.take_value(value)
        return True

    def fast_help_type(self, keyword: str, name: str, text: str) -> None:
        """A regex-matched '# HELP name text' or '# TYPE name word' line."""
        self.set_mf(name)
        if keyword == "HELP":
            self.set_help(text)
        else:
            self.set_type(text)

    def check_help(self) -> None:
        """Go checks for a second HELP before reading the text."""
        if self.mf.help:
            raise _LineError(f"second HELP line for metric name {_go_quote(self.mf.name)}")

    def check_type(self) -> None:
        """Go checks for a second TYPE before reading the word."""
        if self.mf.type:
            raise _LineError(
                f"second TYPE line for metric name {_go_quote(self.mf.name)}, "
                "or TYPE reported after samples"
            )

    def set_help(self, text: str) -> None:
        self.check_help()
        self.mf.help = _help_text(text)

    def set_type(self, word: str) -> None:
        self.check_type()
        t = _type_from_word(word)
        if t is None:
            raise _LineError(f"unknown metric type {_go_quote(word)}")
        self.mf.type = t

    # ------------------------------------------------------------ slow path

    def slow_line(self, s: str) -> None:
        """Parse one line the way Go's state machine does."""
        cur = _Cursor(s)
        self.in_braces = False
        self.braces_name = False
        try:
            c = cur.skip_blanks()
        except _Eof:
            return  # only blanks before the end of the body: fine
        if c == "\n":
            return
        if c == "#":
            self.comment(cur)
        elif c == "{":
            self.in_braces = True
            self.reading_labels(cur)
        else:
            self.metric_name(cur)

    def comment(self, cur: _Cursor) -> None:
        c = cur.skip_blanks()
        if c == "\n":
            return
        keyword = cur.token_until_whitespace()
        if cur.c == "\n":
            return
        if keyword != "HELP" and keyword != "TYPE":
            cur.skip_line()
            return
        cur.skip_blanks()
        name = cur.name(metric=True)
        if cur.c == "\n":
            return
        if cur.c != " " and cur.c != "\t":
            raise _LineError("invalid metric name in comment")
        self.set_mf(name)
        c = cur.skip_blanks()
        if c == "\n":
            return
        if keyword == "HELP":
            self.check_help()
            self.set_help(cur.until_newline(escapes=True))
        else:
            self.check_type()
            self.set_type(cur.until_newline(escapes=False))

    def metric_name(self, cur: _Cursor) -> None:
        name = cur.name(metric=True)
        if not name:
            raise _LineError("invalid metric name")
        self.set_mf(name)
        if not self.mf.type:
            self.mf.type = UNTYPED
        self.metric = Metric({})
        cur.skip_blanks_if_blank()
        self.reading_labels(cur)

    def reading_labels(self, cur: _Cursor) -> None:
        mf = self.mf
        if mf is not None and (mf.type == SUMMARY or mf.type == HISTOGRAM):
            self.cur_labels = {"__name__": mf.name}
            self.quantile = _NAN
            self.bucket = _NAN
        if cur.c != "{":
            self.reading_value(cur)
        else:
            self.label_set(cur)

    def new_braces_metric(self, name: str) -> None:
        """A name given inside the braces: {"name", a="b"} or {a="b", name}."""
        self.set_mf(name)
        if not self.mf.type:
            self.mf.type = UNTYPED
        self.metric = Metric({})

    def attach_labels(self, pending: list[tuple[str, str]]) -> None:
        if self.mf is None:
            raise _LineError("invalid metric name")
        if self.metric is None:
            # Go dereferences a nil metric here and the request dies in a
            # panic; answer with the closest parse error instead.
            raise _LineError("invalid metric name")
        labels = self.metric.labels
        for k, v in pending:
            labels[k] = v

    def label_set(self, cur: _Cursor) -> None:
        """From just after '{' to the value (Go's label states)."""
        pending: list[tuple[str, str]] = []
        while True:
            c = cur.skip_blanks()
            if c == "}":
                self.attach_labels(pending)
                cur.skip_blanks()
                self.reading_value(cur)
                return
            name = cur.name(metric=self.rendered)
            if not name:
                mf_name = self.mf.name if self.mf is not None else ""
                raise _LineError(f"invalid label name for metric {_go_quote(mf_name)}")
            c = cur.skip_blanks_if_blank()
            if c != "=":
                if not self.in_braces:
                    raise _LineError(
                        f"expected '=' after label name, found {_go_quote_byte(c)}"
                    )
                if self.braces_name:
                    raise _LineError(
                        f"multiple metric names for metric {_go_quote(self.mf.name)}"
                    )
                if c == ",":
                    self.new_braces_metric(name)
                    self.braces_name = True
                    continue
                if c == "}":
                    self.new_braces_metric(name)
                    self.attach_labels(pending)
                    cur.skip_blanks()
                    self.reading_value(cur)
                    return
                raise _LineError(f"unexpected end of metric name {_go_quote_byte(c)}")
            if name == "__name__":
                raise _LineError('label name "__name__" is reserved')
            if _LEGACY_LABEL_NAME.fullmatch(name) is None and not (
                self.utf8_names and is_utf8_name(name)
            ):
                raise _LineError(f"invalid label name {_go_quote(name)}")
            t = self.cur_type()
            special = (t == SUMMARY and name == "quantile") or (
                t == HISTOGRAM and name == "le"
            )
            if not special and any(k == name for k, _ in pending):
                raise _LineError(
                    f"duplicate label names for metric {_go_quote(self.mf.name if self.mf else '')}"
                )
            value = self.label_value(cur, name, t)
            if not special:
                pending.append((name, value))
            c = cur.skip_blanks()
            if c == ",":
                continue
            if c == "}":
                self.attach_labels(pending)
                cur.skip_blanks()
                self.reading_value(cur)
                return
            raise _LineError(f"unexpected end of label value {_go_quote(value)}")

    def label_value(self, cur: _Cursor, name: str, t: str) -> str:
        c = cur.skip_blanks()
        if c != '"':
            raise _LineError(
                f"expected '\"' at start of label value, found {_go_quote_byte(c)}"
            )
        value = cur.label_value()
        if _has_invalid_utf8(value):
            raise _LineError(f"invalid label value {_go_quote(value)}")
        special = "quantile" if t == SUMMARY else "le" if t == HISTOGRAM else None
        if special is None:
            return value
        if name != special:
            self.grouping_label(name, value)
            return value
        bound = _go_float(value)
        if bound is None:
            raise _LineError(
                f"expected float as value for '{special}' label, got {_go_quote(value)}"
            )
        if t == SUMMARY:
            self.quantile = bound
        else:
            self.bucket = bound
        return value

    def grouping_label(self, name: str, value: str) -> None:
        if self.cur_labels is None:
            # Go writes into a nil map here and panics; see attach_labels.
            raise _LineError("invalid metric name")
        self.cur_labels[name] = value

    def reading_value(self, cur: _Cursor) -> None:
        self.attach_metric()
        token = cur.token_until_whitespace()
        value = _go_float(token)
        if value is None:
            raise _LineError(f"expected float as value, got {_go_quote(token)}")
        self.take_value(value)
        if cur.c == "\n":
            return
        cur.skip_blanks()
        token = cur.token_until_whitespace()
        ts = _go_int64(token)
        if ts is None:
            raise _LineError(f"expected integer as timestamp, got {_go_quote(token)}")
        self.metric.timestamp_ms = ts
        rest = cur.until_newline(escapes=False)
        if rest:
            raise _LineError(f"spurious string after timestamp: {_go_quote(rest)}")

    # ------------------------------------------------------------ result

    def result(self) -> dict[str, MetricFamily]:
        """Drop empty families and normalise histograms, as Go does at the end."""
        for m in self.hist_metrics:
            if isinstance(m.count, float) or any(
                isinstance(c, float) for _, c in m.buckets
            ):
                m.count = float(m.count)
                m.buckets = [(ub, float(c)) for ub, c in m.buckets]
        out: dict[str, MetricFamily] = {}
        for name, mf in self.families.items():
            if mf.metrics:
                if not mf.type:
                    mf.type = COUNTER  # Go's GetType() of an unset type
                out[name] = mf
        return out


def _decode(body: bytes) -> tuple[str, bool]:
    """Decode once; invalid UTF-8 survives as surrogate escapes (byte-exact)."""
    try:
        return str(body, "utf-8"), True
    except UnicodeDecodeError:
        return str(body, "utf-8", "surrogateescape"), False


def parse_text(body: bytes, utf8_names: bool = False, rendered: bool = False) -> dict[str, MetricFamily]:
    """Parse a pushed text-format body into families keyed by name.

    Raises ParseError with Go's message for anything Go rejects.
    ``utf8_names`` is Go's UTF8Validation: metric and label names (quoted
    when they are not legacy-valid) need only be non-empty, valid UTF-8.
    ``rendered`` reads pushgw's own rendering back (stored lines): like Go's
    writeName, it leaves a label name unquoted when it is a legacy-valid
    *metric* name, so a ':' may stand in it, which no pushed body may have.

    What the families hold, as Go's would:
    - duplicate series are all kept; label names are unique per metric;
    - types are counter/gauge/untyped/summary/histogram ("gauge_histogram"
      becomes histogram); families without samples are dropped;
    - summary counts are ints (Go's uint64(float64) on amd64: 1.5 -> 1,
      -1 -> 2**64-1, NaN -> 2**63); histogram counts and bucket counts are
      ints, or all floats in a histogram where any count is not a whole
      number >= 0 (Go's float histograms); negative ones are rejected;
    - timestamp_ms is kept (rejecting it is the store's business);
    - help is "" when absent; invalid UTF-8 in it becomes U+FFFD;
    - in Go's odd '{...}' lines one Metric object can appear twice.

    The cyclic garbage collector is paused meanwhile (see gc_paused).
    """
    with gc_paused():
        return _parse(body, True, utf8_names, rendered)


def _parse(body: bytes, fast: bool, utf8_names: bool = False, rendered: bool = False) -> dict[str, MetricFamily]:
    """parse_text; ``fast=False`` forces the state machine (for tests)."""
    text, clean = _decode(body)
    p = _Parser(utf8_names, rendered)
    if not (fast and clean):
        # Invalid UTF-8 somewhere: the regexes would accept it in label
        # values, so let the state machine see every line.
        lines = text.split("\n")
        last = len(lines) - 1
        for i, line in enumerate(lines):
            try:
                if i < last:
                    p.slow_line(line + "\n")
                elif line:
                    p.slow_line(line)
            except _LineError as e:
                raise ParseError(i + 1, str(e)) from None
            except _Eof:
                raise ParseError(i + 1, "unexpected end of input stream") from None
        return p.result()

    families = p.families
    get_family = families.get
    label_pairs = _STRICT_PAIRS.findall
    infinities = _INFINITIES
    plain = _PLAIN_TYPES
    lineno = 0
    # The current family/metric after a line handled inline below; written
    # back into the parser only when another path needs them.
    last_mf: MetricFamily | None = None
    last_metric: Metric | None = None
    inline_last = False
    try:
        for name, labels_src, value_src, ts_src, other, nl in _BODY.findall(text):
            lineno += 1
            if name:
                # A strictly formatted sample line. Inline the common case:
                # a known plain family and no escapes.
                mf = get_family(name)
                if mf is None:
                    # A new name, unless it is a summary's/histogram's
                    # _count, _sum or _bucket. A family created here for a
                    # line that turns out bad is harmless: the error ends
                    # the parse, and the state machine would create it too.
                    mf = p.lookup(name)[0]
                    if mf is None:
                        mf = families[name] = MetricFamily(name, UNTYPED)
                if mf.type in plain and "\\" not in labels_src:
                    value = float(value_src)
                    if value in infinities and value_src[-1] not in "fFyY":
                        value = None  # overflow: a range error in Go
                    if labels_src:
                        pairs = label_pairs(labels_src)
                        labels = dict(pairs)
                        ok = len(labels) == len(pairs) and "__name__" not in labels
                    else:
                        labels = {}
                        ok = True
                    ts = None
                    if ts_src:
                        ts = int(ts_src)
                        if ts < _INT64_MIN or ts > _INT64_MAX:
                            ok = False
                    if ok and value is not None:
                        if not mf.type:
                            mf.type = UNTYPED
                        metric = Metric(labels, value)
                        if ts is not None:
                            metric.timestamp_ms = ts
                        mf.metrics.append(metric)
                        last_mf = mf
                        last_metric = metric
                        inline_last = True
                        continue
                if inline_last:
                    p.mf, p.metric = last_mf, last_metric
                    p.is_count = p.is_sum = False
                    inline_last = False
                if p.fast_sample(name, labels_src, value_src, ts_src or None):
                    continue
                line = name + labels_src + " " + value_src
                if ts_src:
                    line += " " + ts_src
                p.slow_line(line + "\n")
                continue
            if not nl:
                if not other:
                    break  # the empty match at the very end
            elif not other:
                continue  # empty line
            if inline_last:
                p.mf, p.metric = last_mf, last_metric
                p.is_count = p.is_sum = False
                inline_last = False
            line = other + nl
            if nl and _fast_line_tier2(p, line):
                continue
            p.slow_line(line)
    except _LineError as e:
        raise ParseError(lineno, str(e)) from None
    except _Eof:
        raise ParseError(lineno, "unexpected end of input stream") from None
    return p.result()


def _fast_line_tier2(p: _Parser, line: str) -> bool:
    """Regex handling for lines with extra blanks, and for HELP/TYPE lines."""
    m = _FAST_HELP_TYPE.match(line)
    if m is not None:
        p.fast_help_type(*m.group(1, 2, 3))
        return True
    m = _FAST_LINE.match(line)
    if m is not None:
        return p.fast_sample(*m.group(1, 2, 3, 4))
    return False
