"""Push bodies: compression, limits and scrape-format negotiation (pure functions)."""

from __future__ import annotations

import gzip

import pytest
import snappy

from pushgw.config import format_size, parse_size
from pushgw.exposition.scrape import Format
from pushgw.handler.body import BodyError, decompress, parse_families
from pushgw.handler.negotiation import negotiate

TEXT = b"# TYPE a counter\na 1\nb{x=\"y\"} 2\n"


def snappy_stream(data: bytes) -> bytes:
    return snappy.StreamCompressor().add_chunk(data)


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "snappy", "Snappy", "", "identity"])
def test_decompress_round_trip(encoding):
    body = {"gzip": gzip.compress, "snappy": snappy_stream}.get(encoding.lower(), lambda b: b)(TEXT)
    assert decompress(body, encoding, 1 << 20) == TEXT


def test_large_snappy_stream_of_many_chunks():
    data = b"".join(b'm{i="%d"} %d\n' % (i, i) for i in range(20000))
    assert decompress(snappy_stream(data), "snappy", 1 << 24) == data


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("snappy", snappy_stream)])
def test_compression_bomb_is_413_without_inflating_it(encoding, compress):
    bomb = compress(b"0" * (8 << 20))
    assert len(bomb) < (1 << 20)
    with pytest.raises(BodyError) as info:
        decompress(bomb, encoding, 1 << 20)
    assert info.value.status == 413 and "max-decompressed-size" in str(info.value)


@pytest.mark.parametrize(
    "encoding, body",
    [
        ("gzip", b"not gzip"),
        ("gzip", gzip.compress(TEXT)[:-6]),
        ("snappy", b"not snappy"),
        ("snappy", snappy_stream(TEXT)[:-3]),
        ("snappy", b"\xff\x06\x00\x00sNaPpY" + b"\x00\x08\x00\x00" + b"\x00" * 4 + b"\xff\xff\xff\xff"),
        ("snappy", b"\xff\x06\x00\x00sNaPpY" + b"\x05\x01\x00\x00x"),
    ],
)
def test_broken_compressed_bodies_are_400(encoding, body):
    with pytest.raises(BodyError) as info:
        decompress(body, encoding, 1 << 20)
    assert info.value.status == 400


def test_content_type_picks_the_parser():
    assert set(parse_families(TEXT, "text/plain; version=0.0.4")) == {"a", "b"}
    assert set(parse_families(TEXT, "")) == {"a", "b"}
    with pytest.raises(BodyError):  # the official parses as protobuf only with every parameter
        parse_families(
            TEXT,
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
        )
    assert set(parse_families(TEXT, "application/vnd.google.protobuf")) == {"a", "b"}


@pytest.mark.parametrize(
    "accept, expected",
    [
        ("", Format.TEXT),
        ("*/*", Format.TEXT),
        ("text/plain;version=0.0.4", Format.TEXT),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", Format.OPENMETRICS),
        ("application/openmetrics-text;version=0.0.1", Format.OPENMETRICS_0_0_1),
        ("application/openmetrics-text;version=2.0.0", Format.TEXT),
        (
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,"
            "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            Format.PROTOBUF,
        ),
        (
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
            "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            Format.OPENMETRICS,
        ),
        ("application/vnd.google.protobuf;proto=other;encoding=delimited", Format.TEXT),
        ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", Format.TEXT),
        ("text/plain;q=0.9,application/openmetrics-text;version=1.0.0;q=0.1", Format.TEXT),
        ("application/openmetrics-text;version=1.0.0;q=0", Format.TEXT),
        ("garbage;;;,=,q=x", Format.TEXT),
    ],
)
def test_negotiation(accept, expected):
    assert negotiate(accept) is expected


@pytest.mark.parametrize("text, size", [("1024", 1024), ("64MiB", 64 << 20), ("1KB", 1000), ("2 GiB", 2 << 30)])
def test_sizes(text, size):
    assert parse_size(text) == size
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize("text", ["", "1.5MiB", "-1", "10XB", "MiB"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)
