"""The protobuf exposition format: length-delimited ``io.prometheus.client.MetricFamily``.

Go and Java clients push this format by default, and Prometheus asks for it
when it wants native histograms. The messages are defined here from a
``FileDescriptorProto`` built in code (field numbers and types exactly as in
client_model's ``io/prometheus/client/metrics.proto``), so no generated
``_pb2`` module and no ``protoc`` are needed; decoding and encoding of message
bodies is done by Google's ``protobuf`` package (upb, in C). Only the varint
length prefix of the delimited framing is read here.

Decoding (pushes) converts to the shared model (``pushgw.model``) and rejects
what the official Pushgateway rejects (or would render as broken text) with a
``ProtobufError``; encoding (scrapes) writes the model back, re-emitting native
histograms from the ``Histogram`` message kept verbatim in ``Metric.native``.
"""

from __future__ import annotations

import re
from operator import attrgetter
from types import SimpleNamespace

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from pushgw.model import (
    COUNTER,
    GAUGE,
    GAUGE_HISTOGRAM,
    HISTOGRAM,
    SUMMARY,
    UNTYPED,
    Metric,
    MetricFamily,
    gc_paused,
)

__all__ = [
    "MEDIA_TYPE",
    "ProtobufError",
    "pb",
    "parse_delimited",
    "parse_family",
    "encode_family",
    "encode_metrics",
    "frame_family",
]

MEDIA_TYPE = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)


class ProtobufError(ValueError):
    """A pushed protobuf body that cannot be stored; the message is for the client."""


# ---- the schema ------------------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_PACKAGE = "io.prometheus.client"

# message name -> [(field name, number, type, label, message/enum type name)]
_SCHEMA: dict[str, list[tuple[str, int, int, int, str]]] = {
    "LabelPair": [
        ("name", 1, _F.TYPE_STRING, _OPTIONAL, ""),
        ("value", 2, _F.TYPE_STRING, _OPTIONAL, ""),
    ],
    "Gauge": [("value", 1, _F.TYPE_DOUBLE, _OPTIONAL, "")],
    "Counter": [
        ("value", 1, _F.TYPE_DOUBLE, _OPTIONAL, ""),
        ("exemplar", 2, _F.TYPE_MESSAGE, _OPTIONAL, "Exemplar"),
        ("created_timestamp", 3, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.Timestamp"),
    ],
    "Quantile": [
        ("quantile", 1, _F.TYPE_DOUBLE, _OPTIONAL, ""),
        ("value", 2, _F.TYPE_DOUBLE, _OPTIONAL, ""),
    ],
    "Summary": [
        ("sample_count", 1, _F.TYPE_UINT64, _OPTIONAL, ""),
        ("sample_sum", 2, _F.TYPE_DOUBLE, _OPTIONAL, ""),
        ("quantile", 3, _F.TYPE_MESSAGE, _REPEATED, "Quantile"),
        ("created_timestamp", 4, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.Timestamp"),
    ],
    "Untyped": [("value", 1, _F.TYPE_DOUBLE, _OPTIONAL, "")],
    "Histogram": [
        ("sample_count", 1, _F.TYPE_UINT64, _OPTIONAL, ""),
        ("sample_count_float", 4, _F.TYPE_DOUBLE, _OPTIONAL, ""),
        ("sample_sum", 2, _F.TYPE_DOUBLE, _OPTIONAL, ""),
        ("bucket", 3, _F.TYPE_MESSAGE, _REPEATED, "Bucket"),
        ("created_timestamp", 15, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.Timestamp"),
        ("schema", 5, _F.TYPE_SINT32, _OPTIONAL, ""),
        ("zero_threshold", 6, _F.TYPE_DOUBLE, _OPTIONAL, ""),
        ("zero_count", 7, _F.TYPE_UINT64, _OPTIONAL, ""),
        ("zero_count_float", 8, _F.TYPE_DOUBLE, _OPTIONAL, ""),
        ("negative_span", 9, _F.TYPE_MESSAGE, _REPEATED, "BucketSpan"),
        ("negative_delta", 10, _F.TYPE_SINT64, _REPEATED, ""),
        ("negative_count", 11, _F.TYPE_DOUBLE, _REPEATED, ""),
        ("positive_span", 12, _F.TYPE_MESSAGE, _REPEATED, "BucketSpan"),
        ("positive_delta", 13, _F.TYPE_SINT64, _REPEATED, ""),
        ("positive_count", 14, _F.TYPE_DOUBLE, _REPEATED, ""),
        ("exemplars", 16, _F.TYPE_MESSAGE, _REPEATED, "Exemplar"),
    ],
    "Bucket": [
        ("cumulative_count", 1, _F.TYPE_UINT64, _OPTIONAL, ""),
        ("cumulative_count_float", 4, _F.TYPE_DOUBLE, _OPTIONAL, ""),
        ("upper_bound", 2, _F.TYPE_DOUBLE, _OPTIONAL, ""),
        ("exemplar", 3, _F.TYPE_MESSAGE, _OPTIONAL, "Exemplar"),
    ],
    "BucketSpan": [
        ("offset", 1, _F.TYPE_SINT32, _OPTIONAL, ""),
        ("length", 2, _F.TYPE_UINT32, _OPTIONAL, ""),
    ],
    "Exemplar": [
        ("label", 1, _F.TYPE_MESSAGE, _REPEATED, "LabelPair"),
        ("value", 2, _F.TYPE_DOUBLE, _OPTIONAL, ""),
        ("timestamp", 3, _F.TYPE_MESSAGE, _OPTIONAL, ".google.protobuf.Timestamp"),
    ],
    "Metric": [
        ("label", 1, _F.TYPE_MESSAGE, _REPEATED, "LabelPair"),
        ("gauge", 2, _F.TYPE_MESSAGE, _OPTIONAL, "Gauge"),
        ("counter", 3, _F.TYPE_MESSAGE, _OPTIONAL, "Counter"),
        ("summary", 4, _F.TYPE_MESSAGE, _OPTIONAL, "Summary"),
        ("untyped", 5, _F.TYPE_MESSAGE, _OPTIONAL, "Untyped"),
        ("histogram", 7, _F.TYPE_MESSAGE, _OPTIONAL, "Histogram"),
        ("timestamp_ms", 6, _F.TYPE_INT64, _OPTIONAL, ""),
    ],
    "MetricFamily": [
        ("name", 1, _F.TYPE_STRING, _OPTIONAL, ""),
        ("help", 2, _F.TYPE_STRING, _OPTIONAL, ""),
        ("type", 3, _F.TYPE_ENUM, _OPTIONAL, "MetricType"),
        ("metric", 4, _F.TYPE_MESSAGE, _REPEATED, "Metric"),
        ("unit", 5, _F.TYPE_STRING, _OPTIONAL, ""),
    ],
}

# MetricType enum: wire number <-> model type.
_ENUM = (
    ("COUNTER", 0, COUNTER),
    ("GAUGE", 1, GAUGE),
    ("SUMMARY", 2, SUMMARY),
    ("UNTYPED", 3, UNTYPED),
    ("HISTOGRAM", 4, HISTOGRAM),
    ("GAUGE_HISTOGRAM", 5, GAUGE_HISTOGRAM),
)
_TYPE_OF_NUMBER = {number: model for _, number, model in _ENUM}
_NUMBER_OF_TYPE = {model: number for _, number, model in _ENUM}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """metrics.proto (proto2), as a descriptor built in code."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="io/prometheus/client/metrics.proto",
        package=_PACKAGE,
        syntax="proto2",
        dependency=["google/protobuf/timestamp.proto"],
    )
    enum = fdp.enum_type.add(name="MetricType")
    for name, number, _ in _ENUM:
        enum.value.add(name=name, number=number)
    for message, fields in _SCHEMA.items():
        mdp = fdp.message_type.add(name=message)
        for name, number, type_, label, type_name in fields:
            field = mdp.field.add(name=name, number=number, type=type_, label=label)
            if type_name:
                field.type_name = (
                    type_name if type_name.startswith(".") else f".{_PACKAGE}.{type_name}"
                )
    return fdp


def _message_classes() -> SimpleNamespace:
    """The message classes, in a private pool (no clash with any other metrics.proto)."""
    pool = descriptor_pool.DescriptorPool()
    timestamp = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(timestamp)
    pool.Add(timestamp)
    pool.Add(_file_descriptor())
    classes = {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in _SCHEMA
    }
    enum = pool.FindEnumTypeByName(f"{_PACKAGE}.MetricType")
    return SimpleNamespace(**classes, MetricType={v.name: v.number for v in enum.values})


#: ``pb.MetricFamily``, ``pb.Metric``, ``pb.LabelPair`` ... and ``pb.MetricType``
#: (a dict of the enum's names to numbers).
pb = _message_classes()
_MetricFamilyPB = pb.MetricFamily


# ---- decoding ----------------------------------------------------------------

_LEGACY_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Label names seen valid; they repeat in every metric of a push. UTF-8 names
# (--push.enable-utf8-names) have a set of their own, so that a name accepted
# there is never taken for a legacy one.
_GOOD_LABEL_NAMES: set[str] = set()
_GOOD_UTF8_LABEL_NAMES: set[str] = set()
_GOOD_LABEL_NAMES_MAX = 100_000

_NAME_VALUE = attrgetter("name", "value")
_QUANTILE_VALUE = attrgetter("quantile", "value")
_BUCKET_FIELDS = attrgetter("upper_bound", "cumulative_count", "cumulative_count_float")

# Which field of Metric carries the value of each family type.
_VALUE_FIELD = {
    COUNTER: "counter",
    GAUGE: "gauge",
    UNTYPED: "untyped",
    SUMMARY: "summary",
    HISTOGRAM: "histogram",
    GAUGE_HISTOGRAM: "histogram",
}


def _varint(body: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (the delimited framing's prefix)."""
    result = shift = 0
    start = pos
    while True:
        if pos >= len(body):
            raise ProtobufError(f"truncated length prefix at byte {start}")
        byte = body[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise ProtobufError(f"invalid length prefix at byte {start}")


def _split(body: bytes) -> list[tuple[int, memoryview]]:
    """(offset, message bytes) of each length-prefixed message, without copies.

    A body may end only between two messages; a cut inside a prefix or a
    message is an error (the newest official answers 400 to it).
    """
    out = []
    view = memoryview(body)
    pos = 0
    n = len(body)
    while pos < n:
        size, start = _varint(body, pos)
        end = start + size
        if end > n:
            raise ProtobufError(
                f"truncated message at byte {pos}: the prefix announces {size} bytes, "
                f"{n - start} follow"
            )
        out.append((pos, view[start:end]))
        pos = end
    return out


def _str(value: str | bytes) -> str:
    """upb hands out invalid UTF-8 in proto2 strings as bytes; help gets U+FFFD (as text pushes)."""
    if type(value) is str:
        return value
    return value.decode("utf-8", "replace")


def _describe(name: str, labels: dict[str, str] | None = None) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _check_label_name(family: str, name: str | bytes, good: set[str]) -> None:
    """Legacy (or, with ``good`` the UTF-8 set, UTF-8) label-name rules, plus the
    official's ban on the reserved ``__`` prefix."""
    if type(name) is not str or (
        _LEGACY_LABEL_NAME.fullmatch(name) is None
        and not (good is _GOOD_UTF8_LABEL_NAMES and name)  # upb: str is valid UTF-8
    ):
        raise ProtobufError(f"metric family {family!r} has a label with an invalid name: {_str(name)!r}")
    if name.startswith("__"):
        raise ProtobufError(
            f"metric family {family!r} has a label with a reserved name: {name!r}"
        )
    if len(good) >= _GOOD_LABEL_NAMES_MAX:
        good.clear()
    good.add(name)


def _labels_slow(family: str, special: str, pairs, good: set[str]) -> dict[str, str]:  # noqa: ANN001
    """The label pairs as a dict, checked one by one to say what is wrong."""
    labels = {}
    for pair in pairs:
        k = pair.name
        v = pair.value
        if k not in good:
            _check_label_name(family, k, good)
        if type(v) is not str:
            raise ProtobufError(
                f"metric family {family!r} has a label named {k!r} whose value is not UTF-8"
            )
        if k in labels:
            raise ProtobufError(
                f"metric family {family!r} has a metric with two or more labels named {k!r}"
            )
        labels[k] = v
    if special and special in labels:
        raise ProtobufError(
            f"metric {_describe(family, labels)} must not have an explicit {special!r} label"
        )
    return labels


def _labels(family: str, special: str, pairs, good: set[str]) -> dict[str, str]:  # noqa: ANN001
    """The label pairs (a upb container) as a dict, checked; ``special`` is
    'quantile', 'le' or ''; ``good`` the set of names known valid in this mode.

    The common case (known-good names, no duplicates, UTF-8 values) is
    checked on the whole dict at C speed; anything else takes the slow path.
    """
    labels = dict(map(_NAME_VALUE, pairs))
    if (
        len(labels) != len(pairs)
        or not labels.keys() <= good
        or special in labels
    ):
        return _labels_slow(family, special, pairs, good)
    try:
        "".join(labels.values())  # invalid UTF-8 comes as bytes: TypeError
    except TypeError:
        return _labels_slow(family, special, pairs, good)
    return labels


def _is_native(h: Message) -> bool:
    """Whether a Histogram carries native-histogram data (Prometheus's test, plus the schema)."""
    return (
        h.HasField("schema")
        or h.HasField("zero_threshold")
        or h.HasField("zero_count")
        or h.HasField("zero_count_float")
        or len(h.positive_span) > 0
        or len(h.negative_span) > 0
    )


def _histogram(metric: Metric, h: Message) -> None:
    """Fill count, sum, buckets (and native) from a Histogram message.

    In a float histogram (``*_float`` fields > 0, which override the integer
    ones) every count is a float, as the model expects. Buckets are read in
    one pass: each access to a bucket costs a wrapper object in upb.
    """
    raw = list(map(_BUCKET_FIELDS, h.bucket))
    count_float = h.sample_count_float
    if count_float > 0 or any(f > 0 for _, _, f in raw):
        metric.count = count_float if count_float > 0 else float(h.sample_count)
        metric.buckets = [(ub, f if f > 0 else float(c)) for ub, c, f in raw]
    else:
        metric.count = h.sample_count
        metric.buckets = [(ub, c) for ub, c, _ in raw]
    metric.sum = h.sample_sum
    if _is_native(h):
        metric.native = h.SerializeToString()


def _missing_value(name: str, type_: str, field: str, pb_metric: Message) -> ProtobufError:
    labels = {_str(p.name): _str(p.value) for p in pb_metric.label}
    return ProtobufError(
        f"metric {_describe(name, labels)} has no {field} value, but its family is a {type_}"
    )


def _family(name: str, mf: Message, utf8_names: bool) -> MetricFamily:
    """One decoded MetricFamily message in the model, checked as the official's gathering does."""
    if _LEGACY_METRIC_NAME.fullmatch(name) is None and not (utf8_names and name):
        raise ProtobufError(f"invalid metric name {name!r}")
    good = _GOOD_UTF8_LABEL_NAMES if utf8_names else _GOOD_LABEL_NAMES
    type_ = _TYPE_OF_NUMBER.get(mf.type, COUNTER)
    field = _VALUE_FIELD[type_]
    special = "quantile" if type_ == SUMMARY else "le" if field == "histogram" else ""
    metrics = []
    append = metrics.append
    labels_of = _labels
    plain = field in ("counter", "gauge", "untyped")
    for pb_metric in mf.metric:
        if not pb_metric.HasField(field):
            raise _missing_value(name, type_, field, pb_metric)
        labels = labels_of(name, special, pb_metric.label, good)
        if plain:
            metric = Metric(labels, getattr(pb_metric, field).value)
        elif field == "summary":
            s = pb_metric.summary
            metric = Metric(
                labels,
                count=s.sample_count,
                sum=s.sample_sum,
                quantiles=list(map(_QUANTILE_VALUE, s.quantile)),
            )
        else:
            metric = Metric(labels)
            _histogram(metric, pb_metric.histogram)
        if pb_metric.HasField("timestamp_ms"):
            metric.timestamp_ms = pb_metric.timestamp_ms
        append(metric)
    return MetricFamily(name=name, type=type_, help=_str(mf.help), metrics=metrics)


def parse_delimited(body: bytes, utf8_names: bool = False) -> dict[str, MetricFamily]:
    """Parse a pushed body of length-delimited MetricFamily messages, keyed by name.

    As the official: a repeated family name means the last message wins; an
    empty body is no families. Unlike the official, families without metrics
    are dropped here (as the text parser does), and names follow the legacy
    rules unless ``utf8_names`` (``--push.enable-utf8-names``) allows any
    non-empty UTF-8 name, as for text pushes (the official accepts UTF-8
    names in protobuf pushes even without the flag). ``timestamp_ms`` is kept
    (the store rejects it). Raises ProtobufError for anything that cannot be stored.
    """
    if not body:
        return {}
    with gc_paused():
        return _parse(body, utf8_names)


def _parse(body: bytes, utf8_names: bool) -> dict[str, MetricFamily]:
    latest: dict[str | bytes, Message] = {}
    for index, (offset, data) in enumerate(_split(body)):
        try:
            mf = _MetricFamilyPB.FromString(data)
        except DecodeError as err:
            raise ProtobufError(
                f"invalid protobuf MetricFamily message #{index + 1} at byte {offset}: {err}"
            ) from None
        latest[mf.name] = mf
    families = {}
    for name, mf in latest.items():
        if not mf.metric:
            continue
        if type(name) is not str:
            raise ProtobufError(f"invalid metric name {_str(name)!r} (not UTF-8)")
        families[name] = _family(name, mf, utf8_names)
    return families


def parse_family(message: bytes, utf8_names: bool = False) -> MetricFamily | None:
    """One MetricFamily message without framing (as the official persists it); None if empty."""
    try:
        mf = _MetricFamilyPB.FromString(message)
    except DecodeError as err:
        raise ProtobufError(f"invalid protobuf MetricFamily message: {err}") from None
    if not mf.metric:
        return None
    if type(mf.name) is not str:
        raise ProtobufError(f"invalid metric name {_str(mf.name)!r} (not UTF-8)")
    with gc_paused():
        return _family(mf.name, mf, utf8_names)


# ---- encoding ----------------------------------------------------------------


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _utf8(s: str) -> str:
    return s.encode("utf-8", "replace").decode("utf-8")


def _set_count(h: Message, count: int | float) -> None:
    """A count as uint64, or as the float field when it is a float (float histograms)."""
    if type(count) is int:
        h.sample_count = count & 0xFFFFFFFFFFFFFFFF
    else:
        h.sample_count_float = count


def _fill_metric(pb_metric: Message, field: str, m: Metric) -> None:
    """One model metric into a Metric message."""
    try:
        for k, v in m.labels.items():
            pb_metric.label.add(name=k, value=v)
    except UnicodeEncodeError:  # a stray surrogate: never let it break a scrape
        del pb_metric.label[:]
        for k, v in m.labels.items():
            pb_metric.label.add(name=_utf8(k), value=_utf8(v))
    if m.timestamp_ms is not None:
        pb_metric.timestamp_ms = m.timestamp_ms
    if field in ("counter", "gauge", "untyped"):
        getattr(pb_metric, field).value = m.value
    elif field == "summary":
        s = pb_metric.summary
        s.sample_count = int(m.count) & 0xFFFFFFFFFFFFFFFF
        s.sample_sum = m.sum
        for q, v in m.quantiles:
            s.quantile.add(quantile=q, value=v)
    elif m.native is not None:
        pb_metric.histogram.ParseFromString(m.native)
    else:
        h = pb_metric.histogram
        _set_count(h, m.count)
        h.sample_sum = m.sum
        for ub, c in m.buckets:
            b = h.bucket.add(upper_bound=ub)
            if type(c) is int:
                b.cumulative_count = c & 0xFFFFFFFFFFFFFFFF
            else:
                b.cumulative_count_float = c


def encode_metrics(family: MetricFamily) -> bytes:
    """The family's metrics as encoded ``metric`` fields (field 4: tag, length, message).

    Protobuf concatenates repeated fields, so the metrics of one family pushed
    by several groups can be encoded per group, cached, and joined at scrape
    time behind one header (see frame_family).
    """
    field = _VALUE_FIELD.get(family.type)
    if field is None:
        raise ValueError(f"unknown metric type {family.type!r}")
    mf = _MetricFamilyPB()
    for m in family.metrics:
        _fill_metric(mf.metric.add(), field, m)
    return mf.SerializeToString()


def frame_family(name: str, help: str, type: str, metrics_bytes: bytes) -> bytes:  # noqa: A002
    """One length-delimited MetricFamily: header fields, then the encoded metrics.

    ``help`` is left out when empty (the model cannot tell empty from absent).
    """
    header = _MetricFamilyPB(name=_utf8(name), type=_NUMBER_OF_TYPE[type])
    if help:
        header.help = _utf8(help)
    body = header.SerializeToString() + metrics_bytes
    return _uvarint(len(body)) + body


def encode_family(family: MetricFamily) -> bytes:
    """One length-delimited MetricFamily message, metrics in order (for protobuf scrapes)."""
    return frame_family(family.name, family.help, family.type, encode_metrics(family))
