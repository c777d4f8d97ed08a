"""Templates of repeated pushes: bodies that differ from an earlier one only in their values.

Jobs push the same series over and over with new values. Preparing such a
body (parsing, labelling, sorting, rendering, checking) gives the same result
each time except for the values, so once a group has been sent the same shape
of body twice, a template records where each sample value lands in the
rendered families. Later bodies of that shape only check and format their
values: a 10,000-series push then costs a fifth of a full preparation.

A template is used only where it is exact:

- it is built by preparing a probe body, each value replaced by a distinct
  whole number, and reading off where each number lands (a value no sample
  gave, such as the 0 of a missing ``_sum``, stays as it is); it is kept only if
  applying it to the push it was built from gives what the full preparation
  gave, byte for byte;
- a body matches only if every line is the same text up to its last blank,
  lines without a value (comments, blank lines) and lines whose value lands
  nowhere in the result are the same text entirely,
  and its values pass the checks preparation makes on values: Go's float
  syntax without overflow; histogram counts finite and not negative; summary
  counts whole (Go converts them to integers). Anything else is prepared in
  full, errors included.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from itertools import chain

from pushgw.exposition.text_parser import parse_values
from pushgw.exposition.text_render import format_sample, quote_name
from pushgw.model import SUMMARY
from pushgw.storage.consistency import HISTOGRAMS
from pushgw.storage.family import PreparedPush, StoredFamily

# Probe values: whole numbers that format with all their digits and cannot
# be confused with one another (index k stands as 2**40 + k).
_PROBE_BASE = 1 << 40
_TWO64 = float(1 << 64)
_INF = float("inf")

Shape = tuple[tuple[str, ...], tuple[str, ...]]  # each line before its last blank, and after it


def split_shape(text: str) -> Shape:
    """Each line of a body cut at its last blank: (heads, tails)."""
    heads, _, tails = zip(*[line.rpartition(" ") for line in text.split("\n")])
    return heads, tails


@dataclass(slots=True)
class _FamilyTemplate:
    stored: StoredFamily  # as prepared, but for its lines
    fragments: tuple[str, ...]  # the rendered text around the values: one more than picks
    picks: tuple[int, ...]  # which sample's value goes in each place


@dataclass(slots=True)
class PushTemplate:
    """How to prepare any body of one shape from its values (see the module doc)."""

    heads: tuple[str, ...]
    fixed: tuple[int, ...]  # lines without a value
    fixed_tails: tuple[str, ...]  # ... and their text after the last blank
    samples: tuple[int, ...]  # lines with a value, in order
    histogram_counts: tuple[int, ...]  # samples that are histogram (bucket) counts
    summary_counts: tuple[int, ...]  # samples that are summary counts
    families: tuple[tuple[str, _FamilyTemplate], ...]
    problem: str | None

    def apply(self, tails: tuple[str, ...], pushed_at: float) -> PreparedPush | None:
        """The prepared push for a body of this shape; None if a value needs full preparation."""
        if tuple(tails[i] for i in self.fixed) != self.fixed_tails:
            return None
        values = parse_values(list(map(tails.__getitem__, self.samples)))
        if values is None:
            return None
        for i in self.histogram_counts:
            if not 0 <= values[i] < _INF:  # NaN fails too
                return None
        for i in self.summary_counts:
            v = values[i]
            if not (0 <= v < _TWO64 and v.is_integer()):
                return None
        formatted = list(map(format_sample, values))
        families = {}
        for name, t in self.families:
            placed = map(formatted.__getitem__, t.picks)
            text = "".join(chain.from_iterable(zip(t.fragments, placed))) + t.fragments[-1]
            families[name] = replace(t.stored, lines=text.encode(), hashes=array("q"), pushed_at=pushed_at)
        return PreparedPush(families, pushed_at, False, self.problem)


def build_template(
    text: str, shape: Shape, prepared: PreparedPush, prepare: Callable[[bytes], PreparedPush]
) -> PushTemplate | None:
    """A template for bodies shaped like ``text``, or None where one would not be exact.

    ``prepared`` is what full preparation made of ``text``; ``prepare`` does
    full preparation (and may raise: then there is no template).
    """
    if prepared.timestamps:
        return None
    heads, tails = shape
    lines = text.split("\n")
    samples = []
    fixed = []
    for i, line in enumerate(lines):
        stripped = line.lstrip(" \t")
        if stripped and stripped[0] != "#":
            if not heads[i].strip(" \t"):
                return None  # no blank before the value
            samples.append(i)
        else:
            fixed.append(i)
    for k, i in enumerate(samples):
        lines[i] = heads[i] + " " + str(_PROBE_BASE + k)
    try:
        probe = prepare("\n".join(lines).encode())
    except Exception:  # noqa: BLE001 (whatever fails, the body is prepared in full)
        return None
    if probe.timestamps or probe.problem != prepared.problem or list(probe.families) != list(prepared.families):
        return None
    index = {format_sample(float(_PROBE_BASE + k)): k for k in range(len(samples))}
    histogram_counts: set[int] = set()
    summary_counts: set[int] = set()
    families = []
    for name, real in prepared.families.items():
        probed = probe.families[name]
        if _settled(real) != _settled(probed) or real.native or quote_name(name) != name:
            return None
        fragments = []
        picks = []
        before = ""  # the text before the next value
        for line in probed.lines.decode().split("\n")[:-1]:
            head, _, token = line.rpartition(" ")
            k = index.get(token)
            if k is None:  # no sample gave this value (a missing _sum reads 0): it stays
                before += line + "\n"
                continue
            fragments.append(before + head + " ")
            picks.append(k)
            before = "\n"
            if real.type in HISTOGRAMS and _names(head, name + "_bucket", name + "_count"):
                histogram_counts.add(k)
            elif real.type == SUMMARY and _names(head, name + "_count"):
                summary_counts.add(k)
        fragments.append(before)
        # A copy of its own: the store caches things (gzip, protobuf) in the families it holds.
        settled = replace(real, lines=b"", hashes=array("q"), gz=None, proto=None)
        families.append((name, _FamilyTemplate(settled, tuple(fragments), tuple(picks))))
    # A value that lands nowhere (a quantile="NaN" line, a count given twice)
    # may still fail the parse when it changes: such lines must stay as they are.
    used = {k for _, t in families for k in t.picks}
    fixed += [i for k, i in enumerate(samples) if k not in used]
    template = PushTemplate(
        heads, tuple(fixed), tuple(tails[i] for i in fixed), tuple(samples),
        tuple(sorted(histogram_counts)), tuple(sorted(summary_counts)), tuple(families),
        prepared.problem,
    )
    check = template.apply(tails, prepared.pushed_at)
    if check is None or any(
        check.families[name].lines != real.lines for name, real in prepared.families.items()
    ):
        return None
    return template


def _settled(stored: StoredFamily) -> tuple:
    """What of a prepared family does not depend on its values."""
    return (
        stored.name, stored.type, stored.help, stored.sort_key, stored.added_inf,
        stored.utf8, stored.series_digest,
    )


def _names(head: str, *names: str) -> bool:
    """Whether a rendered line (before its value) is a series of one of these metric names."""
    return any(head == n or head.startswith(n + "{") for n in names)


class PushTemplates:
    """The templates of one process, least recently used dropped first.

    A template is built on the second body of one shape for one key (a
    group and the settings its preparation depends on): bodies pushed once
    never pay for one. ``max_lines`` bounds the lines held (a few hundred
    bytes each).
    """

    def __init__(self, max_lines: int = 100_000, max_keys: int = 4096) -> None:
        self.max_lines = max_lines
        self.max_keys = max_keys
        self._templates: OrderedDict[Hashable, PushTemplate] = OrderedDict()
        self._lines = 0
        self._seen: OrderedDict[Hashable, int] = OrderedDict()  # key -> hash of the last shape

    def prepare(
        self, key: Hashable, body: bytes, pushed_at: float, prepare: Callable[[bytes], PreparedPush]
    ) -> PreparedPush:
        """``prepare(body)``, from a template where one fits."""
        if body.count(b"\n") >= self.max_lines:
            return prepare(body)  # too big to keep a template of: do not even split it
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return prepare(body)
        shape = split_shape(text)
        heads = shape[0]
        template = self._templates.get(key)
        if template is not None and template.heads == heads:
            self._templates.move_to_end(key)
            prepared = template.apply(shape[1], pushed_at)
            if prepared is not None:
                return prepared
        prepared = prepare(body)
        fingerprint = hash(heads)
        if (
            self._seen.get(key) == fingerprint
            and (template is None or template.heads != heads)
        ):
            built = build_template(text, shape, prepared, prepare)
            if built is not None:
                self._add(key, built)
        self._seen[key] = fingerprint
        self._seen.move_to_end(key)
        if len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        return prepared

    def _add(self, key: Hashable, template: PushTemplate) -> None:
        old = self._templates.pop(key, None)
        if old is not None:
            self._lines -= len(old.heads)
        self._templates[key] = template
        self._lines += len(template.heads)
        while self._lines > self.max_lines:
            _, dropped = self._templates.popitem(last=False)
            self._lines -= len(dropped.heads)
