"""A minimal reader of Go's gob encoding, enough for an official Pushgateway file.

The official Pushgateway persists its groups with ``encoding/gob``; no
maintained Python reader exists, so this implements the part of the format
(https://pkg.go.dev/encoding/gob) such a file uses: the message framing, type
definitions (struct, slice, array, map and the marshaler kinds), and values of
the basic types, structs, slices, arrays and maps. Interface and complex
values are refused. Values come out as plain Python objects: a struct is a
dict of the fields sent (gob omits zero fields), a map a dict, a slice or
array a list, a GobEncoder / BinaryMarshaler / TextMarshaler value its bytes.

Every length is checked against the bytes that are left before anything is
allocated, and nesting is bounded, so a corrupt file fails with a
:class:`GobError` instead of eating memory or the stack.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_DEPTH = 64  # nesting of values; Pushgateway files need about 10
FIRST_USER_TYPE = 65  # ids below are the predefined types


class GobError(ValueError):
    """The data is not a well-formed gob stream; the message says where."""


@dataclass(frozen=True, slots=True)
class Struct:
    name: str
    fields: tuple[tuple[str, int], ...]  # (field name, type id), in field-number order


@dataclass(frozen=True, slots=True)
class Slice:
    name: str
    elem: int


@dataclass(frozen=True, slots=True)
class Array:
    name: str
    elem: int
    length: int


@dataclass(frozen=True, slots=True)
class Map:
    name: str
    key: int
    elem: int


@dataclass(frozen=True, slots=True)
class Opaque:
    """A type that encodes itself (GobEncoder, BinaryMarshaler, TextMarshaler): sent as bytes."""

    name: str


GobType = Struct | Slice | Array | Map | Opaque

BOOL, INT, UINT, FLOAT, BYTES, STRING, COMPLEX, INTERFACE = range(1, 9)
_WIRE_TYPE, _ARRAY_TYPE, _COMMON_TYPE, _SLICE_TYPE, _STRUCT_TYPE, _FIELD_TYPE = range(16, 22)
_FIELD_TYPES, _MAP_TYPE = 22, 23
_ENCODER_TYPE = -1  # gobEncoderType: never on the wire by id, only inside wireType

# The types that describe types, known to both ends a priori (doc.go).
_BOOTSTRAP: dict[int, GobType] = {
    _COMMON_TYPE: Struct("CommonType", (("Name", STRING), ("Id", INT))),
    _ARRAY_TYPE: Struct("arrayType", (("CommonType", _COMMON_TYPE), ("Elem", INT), ("Len", INT))),
    _SLICE_TYPE: Struct("sliceType", (("CommonType", _COMMON_TYPE), ("Elem", INT))),
    _FIELD_TYPE: Struct("fieldType", (("Name", STRING), ("Id", INT))),
    _FIELD_TYPES: Slice("[]fieldType", _FIELD_TYPE),
    _STRUCT_TYPE: Struct("structType", (("CommonType", _COMMON_TYPE), ("Field", _FIELD_TYPES))),
    _MAP_TYPE: Struct("mapType", (("CommonType", _COMMON_TYPE), ("Key", INT), ("Elem", INT))),
    _ENCODER_TYPE: Struct("gobEncoderType", (("CommonType", _COMMON_TYPE),)),
    _WIRE_TYPE: Struct("wireType", (
        ("ArrayT", _ARRAY_TYPE), ("SliceT", _SLICE_TYPE), ("StructT", _STRUCT_TYPE),
        ("MapT", _MAP_TYPE), ("GobEncoderT", _ENCODER_TYPE),
        ("BinaryMarshalerT", _ENCODER_TYPE), ("TextMarshalerT", _ENCODER_TYPE),
    )),
}

_BASIC_NAMES = {BOOL: "bool", INT: "int", UINT: "uint", FLOAT: "float", BYTES: "[]byte",
                STRING: "string", COMPLEX: "complex", INTERFACE: "interface"}


class _Reader:
    """Reads gob primitives from ``data[pos:end]``; every read is bounds-checked."""

    def __init__(self, data: bytes | memoryview, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise GobError(f"truncated: {n} bytes needed at byte {self.pos}, {self.left()} left")
        start = self.pos
        self.pos += n
        return bytes(self.data[start:self.pos])

    def uint(self) -> int:
        if self.pos >= self.end:
            raise GobError(f"truncated: an unsigned integer expected at byte {self.pos}")
        first = self.data[self.pos]
        self.pos += 1
        if first < 0x80:
            return first
        size = 256 - first
        if size > 8:
            raise GobError(f"invalid unsigned integer of {size} bytes at byte {self.pos - 1}")
        return int.from_bytes(self.take(size), "big")

    def int(self) -> int:
        u = self.uint()
        return ~(u >> 1) if u & 1 else u >> 1

    def float(self) -> float:
        # The float64 bits, byte-reversed, sent as an unsigned integer.
        return struct.unpack(">d", self.uint().to_bytes(8, "little"))[0]

    def count(self, what: str) -> int:
        """An element or byte count: each element needs at least a byte of what is left."""
        at = self.pos
        n = self.uint()
        if n > self.left():
            raise GobError(f"{what} of {n} at byte {at} is longer than the {self.left()} bytes left")
        return n

    def bytes(self) -> bytes:
        return self.take(self.count("byte string"))


class Decoder:
    """Decodes one gob stream: type definitions, then values."""

    def __init__(self) -> None:
        self.types: dict[int, GobType] = dict(_BOOTSTRAP)

    def decode(self, data: bytes | memoryview) -> list[object]:
        """Every value in the stream, in order."""
        values = []
        reader = _Reader(data, 0, len(data))
        while reader.left():
            at = reader.pos
            length = reader.uint()
            if length == 0 or length > reader.left():
                raise GobError(
                    f"truncated: message at byte {at} says {length} bytes, {reader.left()} left"
                )
            message = _Reader(data, reader.pos, reader.pos + length)
            reader.pos += length
            type_id = message.int()
            if type_id < 0:
                self._define(-type_id, message)
            else:
                values.append(self._top_value(type_id, message))
            if message.left():
                raise GobError(f"{message.left()} stray bytes at the end of the message at byte {at}")
        return values

    def _define(self, type_id: int, r: _Reader) -> None:
        if type_id < FIRST_USER_TYPE or type_id in self.types:
            raise GobError(f"invalid type definition: id {type_id} is predefined or defined twice")
        wire = self._value(_WIRE_TYPE, r, 0)
        if len(wire) != 1:
            raise GobError(f"invalid definition of type {type_id}: {sorted(wire)}")
        ((kind, desc),) = wire.items()
        name = desc.get("CommonType", {}).get("Name", "")
        if kind == "StructT":
            fields = tuple((f.get("Name", ""), f.get("Id", 0)) for f in desc.get("Field", []))
            self.types[type_id] = Struct(name, fields)
        elif kind == "SliceT":
            self.types[type_id] = Slice(name, desc.get("Elem", 0))
        elif kind == "ArrayT":
            self.types[type_id] = Array(name, desc.get("Elem", 0), desc.get("Len", 0))
        elif kind == "MapT":
            self.types[type_id] = Map(name, desc.get("Key", 0), desc.get("Elem", 0))
        else:
            self.types[type_id] = Opaque(name)

    def _top_value(self, type_id: int, r: _Reader) -> object:
        if type_id not in self.types and type_id not in _BASIC_NAMES:
            raise GobError(f"a value of undefined type id {type_id}")
        if not isinstance(self.types.get(type_id), Struct):
            # A value that is not a struct is sent as a struct field with delta 0.
            if r.uint() != 0:
                raise GobError(f"corrupt top-level value of type {type_id}: no zero field delta")
        return self._value(type_id, r, 0)

    def _value(self, type_id: int, r: _Reader, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise GobError(f"values nested deeper than {MAX_DEPTH} at byte {r.pos}")
        if type_id == BOOL:
            return r.uint() != 0
        if type_id == INT:
            return r.int()
        if type_id == UINT:
            return r.uint()
        if type_id == FLOAT:
            return r.float()
        if type_id == BYTES:
            return r.bytes()
        if type_id == STRING:
            return r.bytes().decode("utf-8", "surrogateescape")
        t = self.types.get(type_id)
        if t is None:
            what = _BASIC_NAMES.get(type_id)
            raise GobError(
                f"values of type {what} are not supported" if what else f"undefined type id {type_id}"
            )
        if isinstance(t, Opaque):
            return r.bytes()
        if isinstance(t, Struct):
            return self._struct(t, r, depth)
        if isinstance(t, Map):
            items = {}
            for _ in range(r.count(f"map {t.name!r}")):
                key = self._value(t.key, r, depth + 1)
                try:
                    items[key] = self._value(t.elem, r, depth + 1)
                except TypeError:  # an unhashable key (a struct or slice)
                    raise GobError(f"map {t.name!r} has keys of an unsupported type") from None
            return items
        if isinstance(t, Array):
            n = r.count(f"array {t.name!r}")
            if n != t.length:
                raise GobError(f"array {t.name!r} of {n} elements, its type says {t.length}")
            return [self._value(t.elem, r, depth + 1) for _ in range(n)]
        return [self._value(t.elem, r, depth + 1) for _ in range(r.count(f"slice {t.name!r}"))]

    def _struct(self, t: Struct, r: _Reader, depth: int) -> dict[str, object]:
        fields: dict[str, object] = {}
        number = -1
        while True:
            at = r.pos
            delta = r.uint()
            if delta == 0:
                return fields
            number += delta
            if number >= len(t.fields):
                raise GobError(
                    f"field {number} at byte {at} beyond the {len(t.fields)} of struct {t.name!r}"
                )
            name, field_type = t.fields[number]
            fields[name] = self._value(field_type, r, depth + 1)


def decode(data: bytes | memoryview) -> list[object]:
    """Every value of a gob stream (raises GobError when it is not well-formed)."""
    return Decoder().decode(data)


GO_UNIX_OFFSET = 62135596800  # seconds from 0001-01-01 (Go's zero time) to 1970-01-01


def go_time(data: bytes) -> float:
    """A Go ``time.Time`` from its MarshalBinary bytes, as Unix seconds; 0.0 for the zero time.

    Version 1: seconds since year 1 (int64), nanoseconds (int32) and the zone
    offset in minutes (int16), big-endian; version 2 adds a byte of offset seconds.
    """
    if not data or (data[0], len(data)) not in ((1, 15), (2, 16)):
        raise GobError(f"not a Go time value ({len(data)} bytes, version {data[:1].hex() or 'none'})")
    seconds, nanos = struct.unpack(">qi", data[1:13])
    if seconds == 0 and nanos == 0:
        return 0.0
    if not 0 <= nanos < 1_000_000_000:
        raise GobError(f"not a Go time value (nanoseconds {nanos})")
    return seconds - GO_UNIX_OFFSET + nanos / 1e9
