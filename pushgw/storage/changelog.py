"""Change log entries: what one cluster transaction wrote, as one byte string.

Every transaction of a clustered gateway appends one entry to the log (see
pushgw/storage/postgres.py): the group writes it made, each family with
what a replica needs to take it in without parsing its rendered lines again
(its series order and digest). Replicas apply entries in log order, so an
entry says what changed, not what the whole group holds.

Layout: a 4-byte length, a JSON header (orjson is fast both ways), then the
byte strings (rendered lines, protobuf, digests) one after the other in the
header's order; JSON could only carry them re-encoded. An empty entry means
"everything may have changed": followers reload (``pushgw migrate``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import orjson

from pushgw.storage.rows import FamilyRow, GroupWrite

RELOAD = b""
_LENGTH = struct.Struct("<I")


def encode(writes: Iterable[GroupWrite]) -> bytes:
    header: list[list] = []
    blobs: list[bytes] = []
    for w in writes:
        families: list[list] = []
        for name, f in w.families.items():
            if f is None:
                families.append([name])
                continue
            blobs.append(f.lines)
            if f.proto is not None:
                blobs.append(f.proto)
            blobs.append(f.series_digest)
            families.append([
                name, f.type, f.help, f.pushed_at, f.added_inf, f.quarantined, f.sort_key, f.utf8,
                len(f.lines), -1 if f.proto is None else len(f.proto), len(f.series_digest),
            ])
        header.append([w.grouping, w.row, w.replace_all, families])
    head = orjson.dumps(header)
    return b"".join([_LENGTH.pack(len(head)), head, *blobs])


def decode(entry: bytes) -> list[GroupWrite]:
    """The writes of an entry, in the order they were made (not for RELOAD)."""
    (size,) = _LENGTH.unpack_from(entry)
    at = _LENGTH.size + size
    writes = []
    for grouping, row, replace_all, families in orjson.loads(entry[_LENGTH.size:at]):
        rows: dict[str, FamilyRow | None] = {}
        for f in families:
            if len(f) == 1:
                rows[f[0]] = None
                continue
            name, type_, help_, pushed_at, added_inf, quarantined, sort_key, utf8, n_lines, n_proto, n_digest = f
            lines = entry[at:at + n_lines]
            at += n_lines
            proto = None
            if n_proto >= 0:
                proto = entry[at:at + n_proto]
                at += n_proto
            digest = entry[at:at + n_digest]
            at += n_digest
            rows[name] = FamilyRow(
                name, type_, help_, pushed_at, lines, tuple(added_inf), quarantined, proto,
                (sort_key[0], tuple(sort_key[1])) if sort_key else (), digest, utf8,
            )
        writes.append(GroupWrite(grouping, None if row is None else tuple(row), rows, replace_all))
    if at != len(entry):
        raise ValueError(f"change log entry of {len(entry)} bytes holds {at}")
    return writes
