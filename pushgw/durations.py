"""Go durations ("90s", "1h30m", "2d"): parsing and printing them.

Kept apart from pushgw.config, with only ``re`` as import, so that the
``pushgw push``/``pushgw exec`` client can use the same grammar without
loading the server's settings module.
"""

from __future__ import annotations

import re

# The official flag type is kingpin v2.4's Duration(), which parses with
# xhit/go-str2duration: Go's time.ParseDuration grammar (optional sign, decimal
# fractions, several units as in "1h30m") plus "d" (24h) and "w" (7d). "y" is
# NOT accepted (Prometheus' model.ParseDuration would take it, the flag does
# not), and neither is a number without a unit, except "0". We accept exactly
# that grammar. Negative values parse, as in the official.
_NS_PER_UNIT = {
    "ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
    "d": 86_400_000_000_000, "w": 604_800_000_000_000,
}
_MAX_NS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_duration(text: str) -> float:
    """Parse a Go/kingpin duration ("90s", "1h30m", "1.5h", "2d") into seconds."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0.0
    if body == "":
        raise ValueError(f'invalid duration "{text}"')
    total_ns = 0
    pos = 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        whole, frac, unit = match.groups()
        if not whole and not frac:
            raise ValueError(f'invalid duration "{text}"')
        if not unit:
            raise ValueError(f'invalid duration "{text}": missing unit')
        if unit not in _NS_PER_UNIT:
            raise ValueError(
                f'invalid duration "{text}": unknown unit "{unit}" '
                "(valid: ns, us, ms, s, m, h, d, w)")
        size = _NS_PER_UNIT[unit]
        value = int(whole or "0") * size
        if frac:
            # Same arithmetic as Go (float64), so results match to the ns.
            digits = frac
            while int(digits) > _MAX_NS:
                digits = digits[:-1]
            value += int(int(digits) * (size / 10 ** len(digits)))
        total_ns += value
        if total_ns > _MAX_NS:
            raise ValueError(f'invalid duration "{text}": out of range')
        pos = match.end()
    return (-total_ns if text.startswith("-") else total_ns) / 1e9


def format_duration(seconds: float) -> str:
    """Go's time.Duration String(): 300 -> "5m0s", 0.5 -> "500ms", 0 -> "0s"."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_decimal(ns, 3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_decimal(ns, 6)}ms"
    text = _decimal(ns % 60_000_000_000, 9) + "s"
    minutes = ns // 60_000_000_000
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def _decimal(value: int, digits: int) -> str:
    """value / 10**digits without trailing zeros, as Go prints fractions."""
    whole, frac = divmod(value, 10**digits)
    frac_text = f"{frac:0{digits}d}".rstrip("0")
    return f"{whole}.{frac_text}" if frac_text else str(whole)
