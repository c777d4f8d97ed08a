"""Prometheus series selectors over grouping labels: ``{job="batch",instance=~"worker-.*"}``.

Used to list (``GET /api/v1/metrics?match[]=``), delete
(``DELETE /api/v1/admin/groups?match[]=``) and filter the UI. The syntax is
PromQL's label matchers: ``=``, ``!=``, ``=~``, ``!~``; strings in double or
single quotes with PromQL's escapes, or in backticks without any; label
names plain or quoted (``{"my.label"="x"}``); a trailing comma. A label a
group lacks reads as the empty string, so ``{instance=""}`` matches the
groups without an instance label.

Two refusals keep a mistake from deleting everything or nothing silently:
a metric name (``up{...}``, ``{"up"}``, ``__name__``) is refused, since
grouping labels have none, and so is a selector whose every matcher matches
the empty string (``{}``, ``{job=~".*"}``), as Prometheus refuses it.

Regexes are RE2 through google-re2, the C++ library whose syntax Go's
``regexp`` follows, fully anchored and with ``.`` matching newlines, as
Prometheus compiles them (``^(?s:...)$``); RE2 also matches in linear time,
so no regex sent to the API can hang the server. ``\\C`` (one byte), which
only the C++ library knows, is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import re2

LabelPredicate = Callable[[dict[str, str]], bool]

OPERATORS = ("=~", "!~", "!=", "=")  # longest first
_IDENTIFIER = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SPACE = " \t\n\r"
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
_NUMERIC_ESCAPES = {"x": (2, 16, 0xFF), "u": (4, 16, 0x10FFFF), "U": (8, 16, 0x10FFFF)}
_ONE_BYTE = re.compile(r"(?<!\\)(?:\\\\)*\\C")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error goes to the client, not to the server's log
NO_METRIC_NAME = ("selectors match grouping labels, which have no metric name: "
                  'write the labels only, e.g. {job="batch"}')


class SelectorError(ValueError):
    """A selector that cannot be used; the message says why (a 400)."""


@dataclass(frozen=True, slots=True)
class Matcher:
    """One ``name op "value"``; ``test`` says whether a label value satisfies it."""

    name: str
    op: str
    value: str
    test: Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    matchers: tuple[Matcher, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        get = labels.get
        for matcher in self.matchers:  # a loop, not all(...): this runs for every stored group
            if not matcher.test(get(matcher.name, "")):
                return False
        return True


def parse_selectors(texts: Iterable[str]) -> LabelPredicate:
    """One predicate on grouping labels: true when any of the selectors matches (``match[]`` ORed).

    Raises SelectorError for no selector at all, as for a malformed one:
    an absent filter must never mean "every group" to a caller that deletes.
    """
    selectors = [parse_selector(t) for t in texts]
    if not selectors:
        raise SelectorError('no selector given: add match[]={...}, e.g. match[]={job="batch"}')
    if len(selectors) == 1:
        return selectors[0].matches
    return lambda labels: any(s.matches(labels) for s in selectors)


def parse_selector(text: str) -> Selector:
    """Parse one selector, e.g. ``{job="batch",instance=~"worker-.*"}``."""
    parser = _Parser(text)
    matchers = parser.selector()
    if not matchers or all(m.test("") for m in matchers):
        raise SelectorError(
            f"selector {text!r} would match every group: it needs at least one matcher "
            'that does not match the empty string, e.g. job="batch" or job=~".+"')
    return Selector(text, tuple(matchers))


def compile_regex(pattern: str) -> Callable[[str], bool]:
    """A fully anchored RE2 match (as Prometheus' ``^(?s:pattern)$``), memoised per value.

    Many groups share a value (the job's name), and a UI filter runs over
    every group: the memo is what keeps that fast. It lives as long as the
    selector, i.e. one request.
    """
    if _ONE_BYTE.search(pattern):
        raise SelectorError(f"invalid regex {pattern!r}: \\C (any byte) is not supported")
    try:
        re2.compile(pattern, options=_RE2_OPTIONS)  # alone first: "a)|(b" must not close the wrapper
        regex = re2.compile(f"(?s:{pattern})", options=_RE2_OPTIONS)
    except re2.error as err:
        reason = err.args[0].decode("utf-8", "replace") if err.args and isinstance(err.args[0], bytes) else str(err)
        raise SelectorError(f"invalid regex {pattern!r}: {reason}") from None
    memo: dict[str, bool] = {}

    def test(value: str) -> bool:
        result = memo.get(value)
        if result is None:
            result = memo[value] = regex.fullmatch(value) is not None
        return result

    return test


def make_matcher(name: str, op: str, value: str) -> Matcher:
    if op == "=":
        test = value.__eq__
    elif op == "!=":
        test = value.__ne__
    else:
        matches = compile_regex(value)
        test = matches if op == "=~" else (lambda v: not matches(v))
    return Matcher(name, op, value, test)


class _Parser:
    """A recursive-descent reader of one selector; errors name the position."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> SelectorError:
        return SelectorError(f"invalid selector {self.text!r} at character {self.pos + 1}: {what}")

    def skip_space(self) -> None:
        text = self.text
        while self.pos < len(text):
            if text[self.pos] in _SPACE:
                self.pos += 1
            elif text[self.pos] == "#":  # a PromQL comment, to the end of the line
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                break

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos:self.pos + 1]

    def selector(self) -> list[Matcher]:
        if self.peek() == "":
            raise self.fail("empty selector")
        if _METRIC_NAME.match(self.text, self.pos):
            raise self.fail(NO_METRIC_NAME)
        if self.peek() != "{":
            raise self.fail("expected '{'")
        self.pos += 1
        matchers: list[Matcher] = []
        while self.peek() != "}":
            if self.peek() == "":
                raise self.fail("unclosed '{'")
            matchers.append(self.matcher())
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() == "":
                raise self.fail("unclosed '{'")
            elif self.peek() != "}":
                raise self.fail("expected ',' or '}' after a matcher")
        self.pos += 1
        if self.peek() != "":
            raise self.fail("unexpected text after '}'")
        return matchers

    def matcher(self) -> Matcher:
        start = self.pos
        if self.peek() in ('"', "'", "`"):
            name = self.string()
            if self.peek() in (",", "}"):  # {"metric.name"}: Prometheus 3's quoted metric name
                self.pos = start
                raise self.fail(NO_METRIC_NAME)
        else:
            found = _IDENTIFIER.match(self.text, self.pos)
            if found is None:
                raise self.fail("expected a label name")
            name = found.group()
            self.pos = found.end()
        if name == "__name__":
            self.pos = start
            raise self.fail(NO_METRIC_NAME)
        if name == "":
            self.pos = start
            raise self.fail("empty label name")
        self.skip_space()
        op = next((o for o in OPERATORS if self.text.startswith(o, self.pos)), None)
        if op is None:
            raise self.fail(f"expected one of {', '.join(reversed(OPERATORS))} after label {name!r}")
        self.pos += len(op)
        if self.peek() not in ('"', "'", "`"):
            raise self.fail(f"expected a quoted value after {name}{op}")
        return make_matcher(name, op, self.string())

    def string(self) -> str:
        """A PromQL string literal at ``pos`` (Go's escapes; backticks: raw)."""
        text = self.text
        quote = text[self.pos]
        start = self.pos
        self.pos += 1
        if quote == "`":
            end = text.find("`", self.pos)
            if end < 0:
                self.pos = start
                raise self.fail("unterminated raw string")
            self.pos = end + 1
            return text[start + 1:end]
        out = bytearray()
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                self.pos = start
                raise self.fail("unterminated quoted string")
            char = text[self.pos]
            self.pos += 1
            if char == quote:
                break
            if char != "\\":
                out += char.encode("utf-8", "surrogatepass")
                continue
            out += self.escape(quote)
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            self.pos = start
            raise self.fail("string is not valid UTF-8") from None

    def escape(self, quote: str) -> bytes:
        """The bytes of one escape sequence after its backslash."""
        text = self.text
        char = text[self.pos:self.pos + 1]
        self.pos += 1
        if char == "":
            raise self.fail("escape sequence not terminated")
        if char in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[char].encode()
        if char == quote:
            return char.encode()
        if char in "01234567":
            digits, base, top, self.pos = char + text[self.pos:self.pos + 2], 8, 0xFF, self.pos + 2
        elif char in _NUMERIC_ESCAPES:
            count, base, top = _NUMERIC_ESCAPES[char]
            digits = text[self.pos:self.pos + count]
            self.pos += count
        else:
            self.pos -= 1
            raise self.fail(f"unknown escape sequence \\{char}")
        width = 3 if base == 8 else _NUMERIC_ESCAPES[char][0]
        valid = "01234567" if base == 8 else "0123456789abcdefABCDEF"
        if len(digits) != width or any(d not in valid for d in digits):
            raise self.fail(f"illegal character in escape sequence \\{char}")
        value = int(digits, base)
        if value > top or 0xD800 <= value < 0xE000 and char in "uU":
            raise self.fail("escape sequence is an invalid Unicode code point")
        if char in "uU":
            return chr(value).encode()
        return bytes([value])  # \x and octal are bytes, as in Go: "\xc3\xa9" is "é"
