"""Rows: the store's groups as every persistence engine stores them.

One row per group (grouping labels, push and failure times, TTL) and one per
stored family, the time gauges included (its pre-rendered lines, as the
store keeps them). SQLite and PostgreSQL hold the same rows; these functions
turn groups of the store into rows to write, and rows read back into groups.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from pushgw.grouping import GroupKey
from pushgw.storage.family import StoredFamily
from pushgw.storage.store import Change, MetricStore


@dataclass(slots=True)
class FamilyRow:
    name: str
    type: str
    help: str
    pushed_at: float
    lines: bytes
    added_inf: tuple[int, ...] = ()
    quarantined: bool = False
    proto: bytes | None = None
    # Known only to the replica that made the family (the change log carries
    # them, the tables do not): a restore derives them again.
    sort_key: tuple | None = None
    series_digest: bytes = b""
    utf8: bool | None = None


@dataclass(slots=True)
class GroupRow:
    grouping: str
    push_time: float
    failure_time: float
    ttl: float
    problem: str | None
    families: list[FamilyRow]


@dataclass(slots=True)
class GroupWrite:
    """What a batch writes for one group: its row and some (or all) of its families.

    ``families`` maps a name to its row, or to None where the family is gone;
    ``replace_all`` drops every family of the group not in ``families``.
    ``row`` is None when the group itself is gone.
    """

    grouping: str
    row: tuple[float, float, float, str | None] | None  # push_time, failure_time, ttl, problem
    families: dict[str, FamilyRow | None]
    replace_all: bool


@dataclass(slots=True)
class Statements:
    """A batch of writes as the rows each kind of SQL statement takes, in this order:
    drop every family of ``whole`` groups, drop ``gone`` groups, upsert ``groups``,
    drop ``family_deletes``, upsert ``families``."""

    whole: list[str]
    gone: list[str]
    groups: list[tuple]  # grouping, push_time, failure_time, ttl, problem
    family_deletes: list[tuple[str, str]]
    families: list[tuple]  # grouping, name, type, help, pushed_at, lines, added_inf, quarantined, proto


def statements(writes: Iterable[GroupWrite]) -> Statements:
    """A batch holds at most one write per group, so the statement kinds can run one after the other."""
    batch = Statements([], [], [], [], [])
    for w in writes:
        if w.row is None or w.replace_all:
            batch.whole.append(w.grouping)
        if w.row is None:
            batch.gone.append(w.grouping)
            continue
        batch.groups.append((w.grouping, *w.row))
        for name, fam in w.families.items():
            if fam is None:
                batch.family_deletes.append((w.grouping, name))
            else:
                batch.families.append((
                    w.grouping, name, fam.type, fam.help, fam.pushed_at, fam.lines,
                    ",".join(map(str, fam.added_inf)), fam.quarantined, fam.proto,
                ))
    return batch


def row_write(row: GroupRow) -> GroupWrite:
    """A group read back, to write whole."""
    return GroupWrite(row.grouping, (row.push_time, row.failure_time, row.ttl, row.problem),
                      {f.name: f for f in row.families}, replace_all=True)


def apply_writes(groups: dict[str, GroupRow], writes: Iterable[GroupWrite]) -> None:
    """Bring rows (by grouping) forward by one transaction's writes, as the SQL of
    :func:`statements` would: the rows' counterpart of :func:`take_in`."""
    for w in writes:
        if w.row is None:
            groups.pop(w.grouping, None)
            continue
        held = groups.get(w.grouping)
        families = {} if held is None or w.replace_all else {f.name: f for f in held.families}
        for name, family in w.families.items():
            if family is None:
                families.pop(name, None)
            else:
                families[name] = family
        groups[w.grouping] = GroupRow(w.grouping, *w.row, list(families.values()))


def added_inf_indices(text: str) -> tuple[int, ...]:
    """The added_inf column back to indices."""
    return tuple(int(i) for i in text.split(",") if i)


def grouping_text(key: GroupKey) -> str:
    """The grouping column: canonical JSON of the sorted label pairs."""
    return orjson.dumps(key).decode()


def grouping_labels(grouping: str) -> dict[str, str]:
    return dict(orjson.loads(grouping))


def merge(changes: Iterable[Change]) -> list[tuple[GroupKey, frozenset[str] | None]]:
    """One entry per group, in first-change order: the union of the names written."""
    merged: dict[GroupKey, frozenset[str] | None] = {}
    for change in changes:
        if change.key in merged and merged[change.key] is None:
            continue
        if change.names is None or change.key not in merged:
            merged[change.key] = change.names
        else:
            merged[change.key] = merged[change.key] | change.names  # type: ignore[operator]
    return list(merged.items())


def group_write(store: MetricStore, key: GroupKey, names: frozenset[str] | None) -> GroupWrite:
    """What the database must hold for ``key`` now (``names``: only those families)."""
    group = store.groups.get(key)
    if group is None:
        return GroupWrite(grouping_text(key), None, {}, replace_all=True)
    wanted = (group.families.keys() | group.quarantined.keys()) if names is None else names
    families: dict[str, FamilyRow | None] = {}
    for name in wanted:
        stored = group.families.get(name)
        quarantined = stored is None and name in group.quarantined
        if quarantined:
            stored = group.quarantined[name]
        families[name] = None if stored is None else FamilyRow(
            stored.name, stored.type, stored.help, stored.pushed_at, stored.lines,
            stored.added_inf, quarantined, stored.proto if stored.native else None,
            stored.sort_key, stored.series_digest, stored.utf8,
        )
    row = (group.push_time, group.failure_time, group.ttl, group.problem)
    return GroupWrite(grouping_text(key), row, families, replace_all=names is None)


def restore_row(store: MetricStore, row: GroupRow) -> None:
    """Put a group read from a database into the store, replacing what it held."""
    families = [(family_of(f), f.quarantined) for f in row.families]
    store.restore(grouping_labels(row.grouping), row.push_time, row.failure_time, row.ttl,
                  families, row.problem)


def take_in(store: MetricStore, writes: list[GroupWrite]) -> None:
    """Apply the writes of one transaction another replica committed (a change log entry)."""
    store.take_in([
        (grouping_labels(w.grouping), w.row,
         {name: None if f is None else (family_of(f), f.quarantined) for name, f in w.families.items()},
         w.replace_all)
        for w in writes
    ])


def family_of(row: FamilyRow) -> StoredFamily:
    """A family row as the store holds it (not yet indexed: no series hashes)."""
    return StoredFamily(
        row.name, row.type, row.help, row.lines, array("q"), row.pushed_at,
        sort_key=row.sort_key or (), added_inf=row.added_inf, proto=row.proto, native=row.proto is not None,
        utf8=bool(row.utf8), series_digest=row.series_digest,
    )
