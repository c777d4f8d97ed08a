"""The gob reader against the specification's own examples and hostile input."""

from __future__ import annotations

import struct

import pytest

from pushgw.storage.gob import GO_UNIX_OFFSET, MAX_DEPTH, GobError, decode, go_time

# doc.go's example: type Point struct {X, Y int}; Point{22, 33}.
POINT = bytes.fromhex(
    "1fff8103010105506f696e7401ff820001020101580104000101590104000000" "07ff82012c014200"
)


def u(n: int) -> bytes:
    """A gob unsigned integer."""
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([256 - len(raw)]) + raw


def i(n: int) -> bytes:
    return u((~n << 1) | 1 if n < 0 else n << 1)


def s(text: str) -> bytes:
    return u(len(text)) + text.encode()


def msg(*parts: bytes) -> bytes:
    body = b"".join(parts)
    return u(len(body)) + body


def define(type_id: int, kind_field: int, *fields: bytes) -> bytes:
    """A wireType message: kind_field 1 slice, 3 map (field numbers + 1 = the first delta)."""
    common = u(1) + u(1) + s("T") + u(1) + i(type_id) + u(0)
    return msg(i(-type_id), u(kind_field), common, *fields, u(0), u(0))


MAP_OF_INTS = define(65, 4, u(1), i(6), u(1), i(2))  # map[string]int
NESTED_SLICE = define(65, 2, u(1), i(65))  # type T []T


def test_the_specification_example():
    assert decode(POINT) == [{"X": 22, "Y": 33}]
    assert decode(POINT + bytes.fromhex("07ff82012c014200")) == [{"X": 22, "Y": 33}] * 2


def test_singleton_values():
    assert decode(bytes.fromhex("03040006")) == [3]  # doc.go: int 3
    assert decode(msg(i(2), u(0), i(-2))) == [-2]
    assert decode(bytes.fromhex("050800fe3140")) == [17.0]  # doc.go: float 17 is FE 31 40
    assert decode(msg(i(3), u(0), u(0x1234))) == [0x1234]
    assert decode(msg(i(6), u(0), s("hi"))) == ["hi"]
    assert decode(msg(i(1), u(0), u(1))) == [True]
    assert decode(MAP_OF_INTS + msg(i(65), u(0), u(2), s("a"), i(1), s("b"), i(-300))) == [
        {"a": 1, "b": -300}
    ]


@pytest.mark.parametrize(
    "data, message",
    [
        (u(2**60) + b"\x04\x00", "truncated"),  # a message longer than the file
        (msg(i(6), u(0), u(2**62)), "longer than"),  # a string longer than its message
        (MAP_OF_INTS + msg(i(65), u(0), u(2**40)), "longer than"),  # a map count
        (bytes.fromhex("0404000606"), "stray bytes"),
        (msg(i(65), u(0), u(0)), "undefined type"),
        (msg(i(8), u(0), u(0)), "interface are not supported"),
        (MAP_OF_INTS + MAP_OF_INTS, "defined twice"),
        (define(20, 2, u(1), i(2)), "predefined"),
        (bytes([0xF0]) + bytes(16), "invalid unsigned integer"),
        (POINT[:-3], "truncated"),
        (bytes.fromhex("07ff82012c014200"), "undefined type"),  # a value before its type
        (NESTED_SLICE + msg(i(65), u(0), u(1) * (MAX_DEPTH + 5) + u(0)), "nested deeper"),
    ],
)
def test_hostile_input_is_refused(data, message):
    with pytest.raises(GobError, match=message):
        decode(data)


def test_go_time():
    def marshal(seconds: int, nanos: int, version: int = 1) -> bytes:
        v1 = struct.pack(">Bqih", version, seconds, nanos, -1)
        return v1 if version == 1 else v1 + b"\x00"  # version 2: a byte of offset seconds

    assert go_time(marshal(GO_UNIX_OFFSET + 1_700_000_000, 500_000_000)) == 1_700_000_000.5
    assert go_time(marshal(GO_UNIX_OFFSET + 1, 0, version=2)) == 1.0
    assert go_time(marshal(0, 0)) == 0.0  # Go's zero time
    with pytest.raises(GobError):
        go_time(b"\x01\x00")
    with pytest.raises(GobError):
        go_time(marshal(1, 2_000_000_000))
