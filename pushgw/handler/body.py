"""Reading a push body: size limits, Content-Encoding, Content-Type.

Limits are enforced while reading and while inflating, so neither a huge body
nor a small compression bomb is ever held in memory whole.

A body over the limit is refused with 413, but many clients (Python's urllib,
so prometheus-client; Go's net/http up to a point) write the whole body
before they read the answer: if the server answers and closes with unread
data in its socket, the kernel resets the connection and such a client sees
"connection reset" instead of the 413. So the rest of the body is read and
thrown away first, up to DRAIN_BYTES and at most DRAIN_SECONDS (and never
longer than --web.read-timeout): a bounded cost, after which the 413 goes out
anyway and the connection is closed.
"""

from __future__ import annotations

import asyncio
import zlib

import cramjam
from starlette.requests import ClientDisconnect, Request

from pushgw.exposition.protobuf import ProtobufError, parse_delimited
from pushgw.exposition.text_parser import ParseError, parse_text
from pushgw.model import MetricFamily

PROTOBUF_MEDIA_TYPE = "application/vnd.google.protobuf"
PROTOBUF_PROTO = "io.prometheus.client.MetricFamily"
SNAPPY_STREAM_ID = b"\xff\x06\x00\x00sNaPpY"
DRAIN_BYTES = 256 * 1024 * 1024  # most of a refused body read and discarded so the client reads the 413
DRAIN_SECONDS = 10.0


class BodyError(ValueError):
    """A body that cannot be accepted; ``status`` is the answer, ``reason`` its counter label.

    ``unread_body``: part of the body is still unread, so the connection must
    close after the answer (it cannot carry another request).
    """

    def __init__(self, message: str, status: int = 400, reason: str = "malformed_body",
                 unread_body: bool = False) -> None:
        super().__init__(message, status, reason, unread_body)  # all in args: it crosses process boundaries
        self.status = status
        self.reason = reason
        self.unread_body = unread_body

    def __str__(self) -> str:
        return str(self.args[0])


def too_large(what: str, limit: int, unread_body: bool = False) -> BodyError:
    decompressed = "decompressed" in what
    flag = "max-decompressed-size" if decompressed else "max-body-size"
    reason = "decompressed_body_too_large" if decompressed else "body_too_large"
    return BodyError(f"{what} exceeds the limit of {limit} bytes (--push.{flag})", 413, reason, unread_body)


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The raw body: 413 as soon as it grows past ``limit``, 408 if it takes over ``timeout`` s.

    A client that goes away mid-body gets nothing stored (ClientDisconnect propagates).
    """
    length = request.headers.get("content-length")
    announced = int(length) if length is not None and length.isdigit() else None
    if announced is not None and announced > limit:
        drained = await discard_rest(request, announced, min(timeout, DRAIN_SECONDS))
        raise too_large("request body", limit, unread_body=not drained)
    chunks = []
    size = 0
    complete = False
    try:
        async with asyncio.timeout(timeout):
            while not complete and size <= limit:
                chunk, complete = await _next_chunk(request)
                size += len(chunk)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(
            f"request body not received within {timeout:g}s (--web.read-timeout)", 408, "read_timeout"
        ) from None
    if size > limit:
        if not complete:
            left = None if announced is None else announced - size
            complete = await discard_rest(request, left, min(timeout, DRAIN_SECONDS))
        raise too_large("request body", limit, unread_body=not complete)
    return b"".join(chunks)


async def _next_chunk(request: Request) -> tuple[bytes, bool]:
    """The next piece of the body and whether it is the last (ClientDisconnect if the client left)."""
    message = await request.receive()
    if message["type"] != "http.request":
        raise ClientDisconnect()
    return message.get("body", b""), not message.get("more_body", False)


async def discard_rest(request: Request, left: int | None, seconds: float) -> bool:
    """Read and drop what is left of the body (``left`` bytes, None: unknown), within bounds.

    Nothing is read when more than DRAIN_BYTES are announced: that client is
    cut off either way, and reading would only cost time. Stops early when
    the client stops sending or goes away. True when the whole body was read.
    """
    if left is not None and left > DRAIN_BYTES:
        return False
    dropped = 0
    try:
        async with asyncio.timeout(seconds):
            while dropped <= DRAIN_BYTES:
                chunk, complete = await _next_chunk(request)
                dropped += len(chunk)
                if complete:
                    return True
    except (TimeoutError, ClientDisconnect):
        pass
    return False


def decompress(body: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo ``gzip`` or ``snappy`` (matched case-insensitively, as newer officials do)."""
    encoding = content_encoding.strip().lower()
    if encoding == "gzip":
        return _gunzip(body, limit)
    if encoding == "snappy":
        return _unsnappy(body, limit)
    return body


def is_protobuf(content_type: str) -> bool:
    """Whether a body is delimited protobuf; anything else is read as the text format."""
    media, *params = (p.strip() for p in content_type.split(";"))
    options = dict(p.partition("=")[::2] for p in params)
    return (
        media.lower() == PROTOBUF_MEDIA_TYPE
        and options.get("proto") == PROTOBUF_PROTO
        and options.get("encoding") == "delimited"
    )


def parse_families(body: bytes, content_type: str, utf8_names: bool = False) -> dict[str, MetricFamily]:
    """Delimited protobuf when the Content-Type says so, the text format otherwise (as the official).

    ``utf8_names`` (``--push.enable-utf8-names``) accepts any valid UTF-8
    metric and label names; otherwise only legacy ones.
    """
    try:
        if is_protobuf(content_type):
            return parse_delimited(body, utf8_names)
        return parse_text(body, utf8_names)
    except (ParseError, ProtobufError) as err:
        raise BodyError(str(err)) from None


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit)
    except zlib.error as err:
        raise BodyError(f"gzip: invalid body: {err}") from None
    if inflater.unconsumed_tail:
        raise too_large("decompressed body", limit)
    if not inflater.eof:
        raise BodyError("gzip: unexpected EOF")
    return data


def _unsnappy(body: bytes, limit: int) -> bytes:
    """The snappy framing format (what Go's snappy.NewReader and python-snappy's stream use).

    Each chunk's size is known before it is inflated (the raw block starts with
    its length), so the limit holds without inflating anything too large.
    """
    if not body.startswith(SNAPPY_STREAM_ID):
        raise BodyError("snappy: body does not start with the snappy stream identifier")
    out = []
    total = 0
    pos = 0
    while pos < len(body):
        if pos + 4 > len(body):
            raise BodyError("snappy: truncated chunk header")
        kind = body[pos]
        length = int.from_bytes(body[pos + 1 : pos + 4], "little")
        chunk = body[pos + 4 : pos + 4 + length]
        if len(chunk) < length:
            raise BodyError("snappy: truncated chunk")
        pos += 4 + length
        if kind == 0xFF or kind >= 0x80:  # stream identifier, padding, skippable
            continue
        if kind > 0x01:
            raise BodyError(f"snappy: unsupported chunk type {kind:#x}")
        if length < 4:
            raise BodyError("snappy: chunk too short for its checksum")
        data = chunk[4:]  # after the masked CRC-32C
        size = _raw_length(data) if kind == 0x00 else len(data)
        total += size
        if total > limit:
            raise too_large("decompressed body", limit)
        if kind == 0x00:
            try:
                data = bytes(cramjam.snappy.decompress_raw(data))
            except cramjam.DecompressionError as err:
                raise BodyError(f"snappy: corrupt chunk: {err}") from None
        out.append(data)
    return b"".join(out)


def _raw_length(block: bytes) -> int:
    """The uncompressed length a raw snappy block announces (a varint)."""
    result = shift = 0
    for i, byte in enumerate(block[:5]):
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
    raise BodyError("snappy: corrupt chunk length")
