"""The in-memory metric store: groups of pushed families, kept ready to scrape.

Each stored family keeps its samples pre-rendered as text exposition lines
(grouping labels applied), so a scrape is a join of cached bytes. An index by
family name records which groups hold a name and which group owns each series,
so the consistency check of a push looks only at the names it pushes.

The store is mutated only from the event loop, one call at a time, so it needs
no locks: a check and the change it guards happen in one synchronous call.
"""

from __future__ import annotations

import heapq
import math
import time
from bisect import insort
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat

from pushgw.exposition.protobuf import frame_family, parse_delimited
from pushgw.exposition.text_parser import parse_text
from pushgw.exposition.text_render import render_header
from pushgw.grouping import GroupKey, group_key
from pushgw.model import GAUGE, Metric, MetricFamily
from pushgw.names import is_legacy_metric_name
from pushgw.storage.consistency import (
    TIMESTAMPS_ERROR,
    Inconsistency,
    ReservedFamily,
    check_families,
    duplicate_message,
)
from pushgw.storage.family import (
    PUSH_FAILURE_TIME,
    PUSH_TIME,
    TIME_NAMES,
    PreparedPush,
    StoredFamily,
    count_series,
    first_series,
    prepare_push,
    series_hashes,
    series_identities,
    stored_family,
)
from pushgw.storage.labels import labelled_series, series_order
from pushgw.storage.limits import Limits, check_store

PUSH_TIME_HELP = "Last Unix time when changing this group in the Pushgateway succeeded."
PUSH_FAILURE_TIME_HELP = "Last Unix time when changing this group in the Pushgateway failed."
TIME_FAMILIES = {PUSH_TIME: PUSH_TIME_HELP, PUSH_FAILURE_TIME: PUSH_FAILURE_TIME_HELP}


class PushRejected(Inconsistency):
    """A push that failed the check; ``change`` records its failure time on the group."""

    def __init__(self, message: str, change: Change) -> None:
        super().__init__(message)
        self.change = change


@dataclass(slots=True)
class MergedFamily:
    """One family name across all groups: what every scrape format is built from."""

    name: str
    type: str
    help: str
    parts: list[StoredFamily]
    text: bytes  # header and the lines of every part, for the text format
    header_length: int
    utf8: bool = False  # some part has a name that needs escaping (StoredFamily.utf8)

    @property
    def lines(self) -> memoryview:
        """The sample lines without the header, without a copy."""
        return memoryview(self.text)[self.header_length:]


@dataclass(slots=True)
class Group:
    """The families pushed under one grouping key."""

    labels: dict[str, str]
    families: dict[str, StoredFamily] = field(default_factory=dict)
    push_time: float = 0.0
    failure_time: float = 0.0
    ttl: float = 0.0  # seconds after the last successful push; 0: never expires
    # Families pushed under --push.disable-consistency-check that failed the
    # check: stored and shown by the API, but never exposed, so that one bad
    # push cannot break every scrape (the official answers 500 to all).
    quarantined: dict[str, StoredFamily] = field(default_factory=dict)
    problem: str | None = None  # why the quarantined families failed the check
    removed: bool = False  # deleted from the store (MetricStore.groups_by_labels still holds it)

    @property
    def last_push_successful(self) -> bool:
        return self.failure_time <= self.push_time

    @property
    def expires_at(self) -> float:
        """When the group expires; a group never pushed successfully counts from its failure."""
        if self.ttl <= 0:
            return math.inf
        return (self.push_time or self.failure_time) + self.ttl

    def snapshot(self) -> Group:
        """A copy that survives later changes (stored families are never mutated)."""
        return Group(
            dict(self.labels), dict(self.families), self.push_time, self.failure_time, self.ttl,
            dict(self.quarantined), self.problem,
        )


@dataclass(slots=True)
class Change:
    """One change to one group, as the persistence layer needs it.

    ``before`` is the group as it was (None if it did not exist), to undo the
    change when it cannot be made durable; ``names`` are the families the
    change wrote (None: all of them, or the whole group went).
    """

    key: GroupKey
    before: Group | None
    names: frozenset[str] | None


# Another replica's committed write of one group (see MetricStore.take_in):
# labels, (push_time, failure_time, ttl, problem) or None, families, replace_all.
RemoteWrite = tuple[
    dict[str, str],
    "tuple[float, float, float, str | None] | None",
    "dict[str, tuple[StoredFamily, bool] | None]",
    bool,
]


@dataclass(slots=True)
class _NameEntry:
    """Every stored family of one name, across groups."""

    type: str
    families: dict[GroupKey, StoredFamily] = field(default_factory=dict)
    owners: dict[int, GroupKey] = field(default_factory=dict)  # series hash -> group


class MetricStore:
    """Pushed groups, the index by family name, and the cached scrape body."""

    def __init__(
        self,
        reserved: dict[str, ReservedFamily] | None = None,
        check_consistency: bool = True,
        clock: Callable[[], float] = time.time,
        default_ttl: float = 0.0,
        limits: Limits = Limits(),
        utf8_names: bool = False,
    ) -> None:
        self.reserved = reserved or {}
        # --push.enable-utf8-names: which names pushes may use. Only then can
        # a stored family hold names that scrapes may have to escape.
        self.utf8_names = utf8_names
        self.check_consistency = check_consistency
        self.clock = clock
        self.default_ttl = default_ttl
        self.limits = limits
        self.groups: dict[GroupKey, Group] = {}
        self.series_count = 0  # exposed series, the time gauges not counted
        self.expired_total = 0
        self._expiry: list[tuple[float, GroupKey]] = []  # heap; stale entries skipped
        self._names: dict[str, _NameEntry] = {}
        # Restored families not yet in the index by series (see index_pending).
        self._unindexed: deque[tuple[GroupKey, StoredFamily]] = deque()
        self._merged: dict[str, MergedFamily] = {}
        self._sorted_names: list[str] | None = None
        # Groups in the UI's label order, built on first use, then kept up to
        # date as groups are created; deleted groups stay (marked) until a rebuild.
        self._by_labels: list[Group] | None = None

    # --- changes -------------------------------------------------------------

    def push(
        self,
        grouping: dict[str, str],
        families: dict[str, MetricFamily],
        replace: bool,
        ttl: float | None = None,
    ) -> Change:
        """Prepare and apply a push in one go (see :meth:`apply`)."""
        prepared = prepare_push(families, grouping, self.clock(), self.utf8_names, self.limits)
        return self.apply(grouping, prepared, replace, ttl)

    def apply(
        self,
        grouping: dict[str, str],
        prepared: PreparedPush,
        replace: bool,
        ttl: float | None = None,
    ) -> Change:
        """Store a prepared push (PUT when ``replace``, else POST), or raise PushRejected.

        A rejected push still records its failure time on the group, creating the
        group if needed, as the official does; the exception carries that change.
        A push over a store limit raises LimitExceeded and changes nothing.
        ``ttl`` None means the default time to live.
        """
        self.index_pending()
        now = prepared.pushed_at
        key = group_key(grouping)
        families = prepared.families
        held = self.groups[key].families if key in self.groups else {}
        for stored in families.values():  # hashes are salted per process: derive them here
            old = held.get(stored.name)
            if _same_series(old, stored):
                stored.hashes = old.hashes
            else:
                stored.hashes = series_hashes(stored.name, stored.type, stored.lines)
        self._check_store_limits(key, families, replace)
        if prepared.timestamps:  # refused even unchecked, as the official does
            raise PushRejected(TIMESTAMPS_ERROR, self._record_failure(grouping, key, now))
        problem = prepared.problem
        if problem is None:
            try:
                self._check(key, families, replace)
            except Inconsistency as err:
                problem = str(err)
        if problem is not None and self.check_consistency:
            raise PushRejected(problem, self._record_failure(grouping, key, now))
        before = self._snapshot(key)
        group = self._get_or_create(grouping, key)
        if replace:
            for name in [n for n in group.families if n not in TIME_FAMILIES and n not in families]:
                self._remove(key, group, name)
            group.quarantined.clear()
        for name, stored in families.items():
            group.quarantined.pop(name, None)
            if problem is None:
                self._put(key, group, stored)
            else:  # accepted unchecked, but kept out of the exposition
                if name in group.families:
                    self._remove(key, group, name)
                group.quarantined[name] = stored
        group.problem = problem or (group.problem if group.quarantined else None)
        group.push_time = now
        group.ttl = self.default_ttl if ttl is None else ttl
        self._schedule_expiry(key, group)
        self._set_time_family(key, group, PUSH_TIME, now, now)
        if PUSH_FAILURE_TIME not in group.families:
            self._set_time_family(key, group, PUSH_FAILURE_TIME, group.failure_time, now)
        return Change(key, before, None if replace else frozenset(families) | TIME_NAMES)

    def delete(self, grouping: dict[str, str]) -> Change | None:
        """Remove a group; None when there was none."""
        return self._delete(group_key(grouping))

    def wipe(self) -> list[Change]:
        """Remove every group."""
        return [c for c in map(self._delete, list(self.groups)) if c is not None]

    def delete_matching(self, match: Callable[[dict[str, str]], bool]) -> list[Change]:
        """Remove every group whose grouping labels ``match`` (a selector), judged now."""
        doomed = [key for key, group in self.groups.items() if match(group.labels)]
        return [c for c in map(self._delete, doomed) if c is not None]

    def expire(self, now: float | None = None) -> list[Change]:
        """Remove the groups whose time to live has run out by ``now``."""
        now = self.clock() if now is None else now
        changes = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            group = self.groups.get(key)
            if group is not None and group.expires_at == when:
                change = self._delete(key)
                if change is not None:
                    changes.append(change)
                    self.expired_total += 1
        return changes

    def restore(
        self,
        labels: dict[str, str],
        push_time: float,
        failure_time: float,
        ttl: float,
        families: Iterable[tuple[StoredFamily, bool]],
        problem: str | None = None,
    ) -> None:
        """Put back a group read from the database.

        ``families`` are (stored family, quarantined) pairs as persisted: their
        sort keys are derived here. They can be scraped at once; their series
        join the index (for the consistency check) in :meth:`index_pending`.
        """
        key = group_key(labels)
        if key in self.groups:
            self._delete(key)
        group = self.groups[key] = Group(dict(labels), {}, push_time, failure_time, ttl)
        self._ordered(group)
        group.problem = problem
        for stored, quarantined in families:
            first = self.metrics_of(first_series(stored))
            stored.sort_key = series_order(first[0]) if first else ()
            # Whatever mode wrote it: names that are not legacy-valid are the quoted ones.
            stored.utf8 = not is_legacy_metric_name(stored.name) or any(
                quoted in stored.lines for quoted in (b'{"', b',"')
            )
            if quarantined:
                group.quarantined[stored.name] = stored
            else:
                self._attach(key, group, stored, count_series(stored.name, stored.type, stored.lines))
                self._unindexed.append((key, stored))
        for name, value in ((PUSH_TIME, push_time), (PUSH_FAILURE_TIME, failure_time)):
            if name not in group.families:
                self._set_time_family(key, group, name, value, value)
        self._schedule_expiry(key, group)

    def take_in(self, batch: list[RemoteWrite]) -> None:
        """Apply one transaction another replica committed: nothing is checked again.

        Each write holds a group's labels, its row (push time, failure time,
        TTL, problem; None: the group is gone), its families as that replica
        made them, series order included ((stored, quarantined), or None where
        one went), and whether the group holds no other family. At most one
        write per group: the group as the transaction left it.

        What goes or is replaced leaves the index before anything comes back:
        applied group by group, a name could otherwise keep a type that only
        an earlier state of the batch had. A family with the series it
        replaces keeps their hashes, as in :meth:`apply`.
        """
        self.index_pending()
        replaced: dict[tuple[GroupKey, str], StoredFamily] = {}
        keys = [group_key(labels) for labels, *_ in batch]
        for key, (_, row, families, replace_all) in zip(keys, batch):
            group = self.groups.get(key)
            if group is None:
                continue
            if row is None:
                self._delete(key)
                continue
            for name in list(group.families) if replace_all else [n for n in families if n in group.families]:
                replaced[key, name] = group.families[name]
                self._remove(key, group, name)
            if replace_all:
                group.quarantined.clear()
        for key, (labels, row, families, _) in zip(keys, batch):
            if row is None:
                continue
            group = self._get_or_create(labels, key)
            for name, held in families.items():
                group.quarantined.pop(name, None)
                if held is None:
                    continue
                stored, quarantined = held
                if quarantined:
                    group.quarantined[name] = stored
                    continue
                old = replaced.get((key, name))
                stored.hashes = old.hashes if _same_series(old, stored) else series_hashes(
                    stored.name, stored.type, stored.lines
                )
                self._add(key, group, stored)
            group.push_time, group.failure_time, group.ttl, group.problem = row
            self._schedule_expiry(key, group)

    def index_pending(self, max_series: int | None = None) -> bool:
        """Add restored families to the index by series; True when none is left.

        Hashing every restored series takes as long as reading them, and only
        changes need the index: a restart serves scrapes first and indexes in
        the background (``max_series`` at a time), and every change indexes
        whatever is left before it looks at the index.
        """
        pending = self._unindexed
        done = 0
        while pending and (max_series is None or done < max_series):
            key, stored = pending.popleft()
            group = self.groups.get(key)
            if group is None or group.families.get(stored.name) is not stored:
                continue  # gone before it was indexed
            stored.hashes = series_hashes(stored.name, stored.type, stored.lines)
            self._names[stored.name].owners.update(zip(stored.hashes, repeat(key)))
            done += len(stored.hashes)
        return not pending

    def undo(self, change: Change) -> None:
        """Put a group back as it was before ``change`` (undo newest first)."""
        self.index_pending()
        if change.key in self.groups:
            self._delete(change.key)
        before = change.before
        if before is not None:
            families = list(before.families.values())
            group = self.groups[change.key] = before.snapshot()  # quarantine included
            self._ordered(group)
            group.families = {}
            for stored in families:
                self._add(change.key, group, stored)
            self._schedule_expiry(change.key, group)

    # --- views ---------------------------------------------------------------

    def has_family(self, name: str) -> bool:
        return name in self._names

    def family_names(self) -> list[str]:
        if self._sorted_names is None:
            self._sorted_names = sorted(self._names)
        return self._sorted_names

    def groups_by_labels(self) -> list[Group]:
        """Groups ordered by job, then by all labels, for the UI; skip those ``removed``.

        Sorting 100k groups for every page view would cost more than the
        page may; creating a group inserts it (a binary search), and
        deleting one only marks it, so a mass deletion costs nothing here.
        A list grown to twice the groups is rebuilt.
        """
        order = self._by_labels
        if order is None or len(order) > 2 * len(self.groups) + 1024:
            items = sorted(self.groups.items(), key=lambda item: label_order(item[0]))
            order = self._by_labels = [group for _, group in items]
        return order

    def render(self) -> bytes:
        """The text exposition of every stored family, sorted by name."""
        return b"".join(self.merged(n).text for n in self.family_names())

    def merged(self, name: str) -> MergedFamily:
        """One family across every group that has it, cached until it changes.

        A new object after every change, so other formats can cache what
        they derive from it by identity.
        """
        merged = self._merged.get(name)
        if merged is None:
            entry = self._names[name]
            parts = sorted(entry.families.values(), key=_family_order)
            help_text = next((s.help for s in parts if s.help), "")
            header = render_header(name, entry.type, help_text)
            text = b"".join([header, *(s.lines for s in parts)])
            merged = MergedFamily(
                name, entry.type, help_text, parts, text, len(header), any(p.utf8 for p in parts)
            )
            self._merged[name] = merged
        return merged

    def metrics_of(self, stored: StoredFamily) -> list[Metric]:
        """The metrics of a stored family, decoded again from what is stored.

        Whatever the mode, UTF-8 names are accepted: they were checked on the way in;
        and label names are read as they are rendered (see parse_text's ``rendered``).
        """
        if stored.native:
            frame = frame_family(stored.name, "", stored.type, stored.proto)
            family = parse_delimited(frame, utf8_names=True).get(stored.name)
            return family.metrics if family is not None else []
        text = render_header(stored.name, stored.type, "") + stored.lines
        family = parse_text(text, utf8_names=True, rendered=True).get(stored.name)
        metrics = family.metrics if family is not None else []
        for i in stored.added_inf:
            metrics[i].buckets.pop()
        return metrics

    # --- internals -------------------------------------------------------------

    def _check(self, key: GroupKey, families: dict[str, StoredFamily], replace: bool) -> None:
        def type_after_push(name: str) -> str | None:
            """The type ``name`` keeps among the families this push leaves alone."""
            reserved = self.reserved.get(name)
            if reserved is not None:
                return reserved.type
            entry = self._names.get(name)
            if entry is None:
                return None
            if len(entry.families) == 1 and key in entry.families and (replace or name in families):
                return None
            return entry.type

        check_families(families, type_after_push, self.reserved, self.utf8_names)
        held = self.groups[key].families if key in self.groups else {}
        for name, stored in families.items():
            entry = self._names.get(name)
            if entry is None or _same_series(held.get(name), stored):
                continue  # the group holds these very series already: they were checked then
            owners = entry.owners
            for h in stored.hashes:
                owner = owners.get(h)
                if owner is not None and owner != key:
                    self._check_duplicate(owner, stored, h)

    def _check_duplicate(self, owner: GroupKey, stored: StoredFamily, h: int) -> None:
        """Hashes can collide: compare the series' rendered identities before refusing."""
        ours = {i for i in series_identities(stored.name, stored.type, stored.lines) if hash(i) == h}
        held = self._names[stored.name].families[owner]
        theirs = set(series_identities(held.name, held.type, held.lines))
        for identity in ours & theirs:
            raise Inconsistency(duplicate_message(identity.decode("utf-8", "replace")))

    def _check_store_limits(self, key: GroupKey, families: dict[str, StoredFamily], replace: bool) -> None:
        group = self.groups.get(key)
        replaced = 0
        if group is not None:
            names = [n for n in group.families if n not in TIME_FAMILIES] if replace else families
            replaced = sum(len(group.families[n].hashes) for n in names if n in group.families)
        added = sum(len(f.hashes) for f in families.values())
        groups_after = len(self.groups) + (group is None)
        check_store(self.limits, groups_after, self.series_count - replaced + added)

    def _delete(self, key: GroupKey) -> Change | None:
        self.index_pending()
        group = self.groups.pop(key, None)
        if group is None:
            return None
        group.removed = True
        before = group.snapshot()
        for name in list(group.families):
            self._remove(key, group, name)
        return Change(key, before, None)

    def _snapshot(self, key: GroupKey) -> Group | None:
        group = self.groups.get(key)
        return group.snapshot() if group is not None else None

    def _schedule_expiry(self, key: GroupKey, group: Group) -> None:
        if group.ttl > 0:
            heapq.heappush(self._expiry, (group.expires_at, key))
            if len(self._expiry) > 2 * len(self.groups) + 1024:
                # Every re-push leaves a stale entry behind: rebuild from the live groups.
                self._expiry = [(g.expires_at, k) for k, g in self.groups.items() if g.ttl > 0]
                heapq.heapify(self._expiry)

    def _get_or_create(self, grouping: dict[str, str], key: GroupKey) -> Group:
        group = self.groups.get(key)
        if group is None:
            group = Group(labels=dict(grouping), ttl=self.default_ttl)
            self.groups[key] = group
            self._ordered(group)
        return group

    def _record_failure(self, grouping: dict[str, str], key: GroupKey, now: float) -> Change:
        before = self._snapshot(key)
        group = self._get_or_create(grouping, key)
        group.failure_time = now
        if group.push_time == 0:
            self._schedule_expiry(key, group)
        self._set_time_family(key, group, PUSH_FAILURE_TIME, now, now)
        if PUSH_TIME not in group.families:
            self._set_time_family(key, group, PUSH_TIME, group.push_time, now)
        return Change(key, before, TIME_NAMES)

    def _set_time_family(self, key: GroupKey, group: Group, name: str, value: float, now: float) -> None:
        family = MetricFamily(name, GAUGE, TIME_FAMILIES[name], [Metric(labels={}, value=value)])
        if name in group.families:
            self._remove(key, group, name)
        stored = stored_family(family, labelled_series(family.metrics, group.labels), now, self.utf8_names)
        stored.hashes = series_hashes(name, GAUGE, stored.lines)
        self._add(key, group, stored)

    def _add(self, key: GroupKey, group: Group, stored: StoredFamily) -> None:
        self._attach(key, group, stored, len(stored.hashes)).owners.update(
            zip(stored.hashes, repeat(key))
        )

    def _attach(self, key: GroupKey, group: Group, stored: StoredFamily, series: int) -> _NameEntry:
        """Everything of _add but the index by series."""
        group.families[stored.name] = stored
        entry = self._names.get(stored.name)
        if entry is None:
            entry = self._names[stored.name] = _NameEntry(stored.type)
            self._sorted_names = None
        entry.families[key] = stored
        if stored.name not in TIME_FAMILIES:
            self.series_count += series
        self._invalidate(stored.name)
        return entry

    def _put(self, key: GroupKey, group: Group, stored: StoredFamily) -> None:
        """Add a family to a group, replacing the one of that name it holds."""
        old = group.families.get(stored.name)
        if old is None:
            self._add(key, group, stored)
        elif not _same_series(old, stored):
            self._remove(key, group, stored.name)
            self._add(key, group, stored)
        else:  # the same series: the index by series stays as it is
            group.families[stored.name] = stored
            self._names[stored.name].families[key] = stored
            self._invalidate(stored.name)

    def _remove(self, key: GroupKey, group: Group, name: str) -> None:
        stored = group.families.pop(name)
        entry = self._names[name]
        del entry.families[key]
        owners = entry.owners
        for h in stored.hashes:
            if owners.get(h) == key:
                del owners[h]
        if not entry.families:
            del self._names[name]
            self._sorted_names = None
        if name not in TIME_FAMILIES:
            self.series_count -= len(stored.hashes)
        self._invalidate(name)

    def _invalidate(self, name: str) -> None:
        self._merged.pop(name, None)

    def _ordered(self, group: Group) -> None:
        """Put a new group into the label order (once it is built)."""
        if self._by_labels is not None:
            insort(self._by_labels, group, key=group_label_order)


def label_order(key: GroupKey) -> tuple[str, GroupKey]:
    """The job's value first (the page shows it first), then the whole key, sorted by label name."""
    for name, value in key:
        if name == "job":
            return value, key
    return "", key


def group_label_order(group: Group) -> tuple[str, GroupKey]:
    """label_order of a group, from its labels."""
    return label_order(group_key(group.labels))


def _same_series(old: StoredFamily | None, new: StoredFamily) -> bool:
    """Whether ``new`` has exactly the series of ``old`` (both held by one group)."""
    return old is not None and old.series_digest == new.series_digest != b""


def _family_order(stored: StoredFamily) -> tuple:
    return stored.sort_key
