"""Reading the official Pushgateway's persistence file into the groups pushgw stores.

The official (``--persistence.file``) writes one gob value: a map from its
grouping key to a group of ``Labels`` (the grouping labels) and ``Metrics``,
a map from family name to ``{Timestamp, GobbableMetricFamily}``: the time of
the push that stored the family (a ``time.Time``) and the family as a
protobuf ``MetricFamily`` message, its series already carrying the grouping
labels. The group's ``push_time_seconds`` and ``push_failure_time_seconds``
are families like the others; the last push succeeded unless the failure time
is the later one. 1.5.1 (Debian's) and the newest releases write this layout.

Families go through pushgw's own push path (prepare_push, MetricStore.apply,
consistency check off), then each group's times are put back from the file
with MetricStore.restore; the rows come from writer.group_write. So they are
stored exactly as if pushed to pushgw. Groups are applied in the order of
their last push, so where the official held groups that contradict each
other (possible with --push.disable-consistency-check), the later one's
families are the ones quarantined, as pushgw would have done.
"""

from __future__ import annotations

from pushgw.exposition.protobuf import ProtobufError, parse_family
from pushgw.grouping import format_group, group_key
from pushgw.model import GAUGE, Metric, MetricFamily
from pushgw.storage.family import PUSH_FAILURE_TIME, PUSH_TIME, TIME_NAMES, prepare_push, stored_family
from pushgw.storage.gob import GobError, decode, go_time
from pushgw.storage.labels import labelled_series
from pushgw.storage.rows import GroupWrite
from pushgw.storage.store import TIME_FAMILIES, MetricStore, PushRejected
from pushgw.storage.writer import group_write


class OfficialFileError(ValueError):
    """The file is not a readable official persistence file; the message says why."""


class _Group:
    """One group as the official file holds it."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.families: dict[str, MetricFamily] = {}
        self.pushed_at: dict[str, float] = {}  # per family: the time of the push that stored it

    def time_value(self, name: str) -> float:
        """The value of a time gauge, as the official reads it (0 when absent)."""
        family = self.families.get(name)
        return family.metrics[0].value if family is not None and family.metrics else 0.0


def read_official(data: bytes) -> list[GroupWrite]:
    """Every group of an official persistence file, as rows for the database."""
    groups = _groups(data)
    store = MetricStore(check_consistency=False)
    groups.sort(key=lambda g: (g.time_value(PUSH_TIME), group_key(g.labels)))
    for group in groups:
        try:
            _store_group(store, group)
        except OfficialFileError:
            raise
        except ValueError as err:  # what the store cannot take back (e.g. its re-parse of a family)
            raise OfficialFileError(f"group {format_group(group.labels)} cannot be stored: {err}") from None
    return [group_write(store, key, None) for key in store.groups]


def _store_group(store: MetricStore, group: _Group) -> None:
    labels = group.labels
    pushed = {n: f for n, f in group.families.items() if n not in TIME_NAMES}
    push_time = group.time_value(PUSH_TIME)
    prepared = prepare_push(pushed, labels, push_time, utf8_names=True)
    for name, stored in prepared.families.items():
        stored.pushed_at = group.pushed_at[name]
    try:
        store.apply(labels, prepared, replace=True, ttl=0.0)
    except PushRejected as err:  # only samples with timestamps: the official never stores them
        raise OfficialFileError(f"group {format_group(labels)}: {err}") from None
    held = store.groups[group_key(labels)]
    families = [(s, False) for n, s in held.families.items() if n not in TIME_NAMES]
    families += [(s, True) for s in held.quarantined.values()]
    times = {}
    for name, help_text in TIME_FAMILIES.items():
        times[name] = value = group.time_value(name)
        gauge = MetricFamily(name, GAUGE, help_text, [Metric(labels={}, value=value)])
        at = group.pushed_at.get(name, value)
        families.append((stored_family(gauge, labelled_series(gauge.metrics, labels), at), False))
    store.restore(labels, times[PUSH_TIME], times[PUSH_FAILURE_TIME], 0.0, families, held.problem)


def _groups(data: bytes) -> list[_Group]:
    try:
        values = decode(data)
    except GobError as err:
        raise OfficialFileError(f"not a readable official persistence file: {err}") from None
    if len(values) != 1 or not isinstance(values[0], dict):
        raise OfficialFileError(
            f"not an official persistence file: {len(values)} gob values, expected one map of groups"
        )
    groups = []
    for key, value in values[0].items():
        where = f"group {_printable(key)!r}"
        if not isinstance(value, dict):
            raise OfficialFileError(f"{where}: not a group")
        labels = _string_map(value.get("Labels", {}), where + " labels")
        group = _Group(labels)
        where = f"group {format_group(labels)}"
        metrics = value.get("Metrics", {})
        if not isinstance(metrics, dict):
            raise OfficialFileError(f"{where}: its families are not a map")
        for name, entry in metrics.items():
            _read_family(group, _text(name, where), entry, where)
        groups.append(group)
    return groups


def _read_family(group: _Group, name: str, entry: object, where: str) -> None:
    where = f"{where}, family {name!r}"
    if not isinstance(entry, dict):
        raise OfficialFileError(f"{where}: not a timestamped family")
    message = entry.get("GobbableMetricFamily")
    if message is None:
        return  # a nil family: the official skips it too ("storage corruption detected")
    stamp = entry.get("Timestamp", b"")
    if not isinstance(message, bytes) or not isinstance(stamp, bytes):
        raise OfficialFileError(f"{where}: not a timestamped protobuf family")
    try:
        family = parse_family(message, utf8_names=True)
        pushed_at = go_time(stamp) if stamp else 0.0
    except (ProtobufError, GobError) as err:
        raise OfficialFileError(f"{where}: {err}") from None
    if family is None:
        return  # no metrics: nothing to show (pushgw ignores such families)
    if family.name != name:
        raise OfficialFileError(f"{where}: holds family {family.name!r}")
    if name in TIME_NAMES and (family.type != GAUGE or len(family.metrics) != 1):
        raise OfficialFileError(f"{where}: not a single gauge")
    group.families[name] = family
    group.pushed_at[name] = pushed_at


def _string_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise OfficialFileError(f"{where}: not a map of strings")
    return {_text(k, where): _text(v, where) for k, v in value.items()}


def _text(value: object, where: str) -> str:
    """A gob string that must be valid UTF-8 (gob carries any bytes)."""
    if not isinstance(value, str):
        raise OfficialFileError(f"{where}: {value!r} is not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise OfficialFileError(f"{where}: {_printable(value)!r} is not valid UTF-8") from None
    return value


def _printable(key: object) -> str:
    """The official's grouping key (names and values joined by 0xFF) for a message."""
    if not isinstance(key, str):
        return repr(key)
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
