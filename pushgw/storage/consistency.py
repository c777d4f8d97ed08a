"""The consistency check a push must pass before it is stored.

The official Pushgateway re-gathers the whole store plus the push on every
check, which costs time in proportion to everything stored. The same rules are
checked here against an index by family name, so a check costs in proportion
to the push alone:

- a family name has one type across all groups and the gateway's own metrics;
- no two series (in one push, or in different groups) share name and labels;
- a summary or histogram ``x`` cannot coexist with ``x_count`` or ``x_sum``, a
  histogram not with ``x_bucket`` either (the names the text format derives);
- a family named like one of the gateway's own families must have its type,
  and, where the official compares HELP strings, its HELP;
- names are valid in the gateway's mode: legacy names, or with
  ``--push.enable-utf8-names`` any non-empty UTF-8; label names never start
  with the reserved ``__``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pushgw.exposition.text_render import series_text
from pushgw.model import GAUGE_HISTOGRAM, HISTOGRAM, SUMMARY, MetricFamily
from pushgw.names import is_legacy_label_name, is_legacy_metric_name, is_utf8_name

HISTOGRAMS = (HISTOGRAM, GAUGE_HISTOGRAM)

TIMESTAMPS_ERROR = "pushed metrics must not have timestamps"


@dataclass(frozen=True, slots=True)
class ReservedFamily:
    """A family the gateway exposes itself (``process_*``, ``pushgateway_*`` ...)."""

    type: str
    help: str
    strict_help: bool  # the official rejects pushes of it with another HELP


class Inconsistency(ValueError):
    """A push that would make the merged exposition inconsistent."""


def has_timestamps(families: Iterable[MetricFamily]) -> bool:
    return any(m.timestamp_ms is not None for f in families for m in f.metrics)


class FamilyInfo(Protocol):
    """What the cross-family checks look at: a pushed or a prepared family."""

    name: str
    type: str
    help: str


def check_families(
    families: Mapping[str, FamilyInfo],
    type_of: Callable[[str], str | None],
    reserved: dict[str, ReservedFamily],
    utf8_names: bool = False,
) -> None:
    """Check pushed families against the names they join.

    Their label names and duplicate series: see check_label_names and check_duplicates.

    ``type_of(name)`` gives the type a name will have among the *other* stored
    families after the push (None when absent), reserved names included.
    ``utf8_names`` is ``--push.enable-utf8-names``: which names are valid.
    """
    for family in families.values():
        if not (is_utf8_name(family.name) if utf8_names else is_legacy_metric_name(family.name)):
            raise Inconsistency(f"{family.name!r} is not a valid metric name")
        own = reserved.get(family.name)
        if own is not None:
            if own.type != family.type:
                raise Inconsistency(
                    f"gathered metric family {family.name} has type {family.type.upper()} "
                    f"but should have {own.type.upper()}"
                )
            if own.strict_help and own.help != family.help:
                raise Inconsistency(
                    f"gathered metric family {family.name} has help {family.help!r} "
                    f"but should have {own.help!r}"
                )
        existing = type_of(family.name)
        if existing is not None and existing != family.type:
            raise Inconsistency(
                f"metric family {family.name} has type {family.type.upper()} "
                f"but is already stored with type {existing.upper()}"
            )
        _check_suffix_collisions(family, families, type_of)


def _name_type(
    name: str, families: Mapping[str, FamilyInfo], type_of: Callable[[str], str | None]
) -> str | None:
    pushed = families.get(name)
    return pushed.type if pushed is not None else type_of(name)


def _check_suffix_collisions(
    family: FamilyInfo,
    families: Mapping[str, FamilyInfo],
    type_of: Callable[[str], str | None],
) -> None:
    name = family.name
    for suffix in ("_count", "_sum", "_bucket"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            base_type = _name_type(base, families, type_of)
            if base_type in HISTOGRAMS or (base_type == SUMMARY and suffix != "_bucket"):
                raise Inconsistency(
                    f"metric named {name!r} collides with {base_type} named {base!r}"
                )
    if family.type == SUMMARY or family.type in HISTOGRAMS:
        suffixes = ("_count", "_sum") if family.type == SUMMARY else ("_count", "_sum", "_bucket")
        for suffix in suffixes:
            if _name_type(name + suffix, families, type_of) is not None:
                raise Inconsistency(
                    f"{family.type} named {name!r} collides with metric named {name + suffix!r}"
                )


def check_label_names(family_name: str, names: Iterable[str], utf8_names: bool) -> None:
    """Valid, unreserved (``__``) label names; ``names`` are all a family's series have."""
    valid = is_utf8_name if utf8_names else is_legacy_label_name
    for name in names:
        if name.startswith("__") or not valid(name):
            raise Inconsistency(
                f"collected metric {family_name} has a label with an invalid name: {name}"
            )


def check_duplicates(family_name: str, kind: str, pairs: Sequence[str]) -> None:
    """No two series of a family with the same labels, given as rendered label pairs.

    The message names the series as the exposition writes it (a summary's or
    histogram's by its ``_count`` line).
    """
    if len(set(pairs)) == len(pairs):
        return
    name = family_name + "_count" if kind == SUMMARY or kind in HISTOGRAMS else family_name
    seen: set[str] = set()
    for p in pairs:
        if p in seen:
            raise Inconsistency(duplicate_message(series_text(name, p)))
        seen.add(p)


def duplicate_message(series: str) -> str:
    """``series`` as the exposition writes it: ``name{a="b"}``."""
    return f"collected metric {series} was collected before with the same name and label values"
