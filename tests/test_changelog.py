"""The change log: a replica that takes in another's committed writes holds what it holds."""

from __future__ import annotations

import random

import pytest

from pushgw.exposition.text_parser import parse_text
from pushgw.storage import changelog
from pushgw.storage.consistency import Inconsistency
from pushgw.storage.limits import LimitExceeded
from pushgw.storage.rows import FamilyRow, GroupWrite, group_write, merge, take_in
from pushgw.storage.store import Change, MetricStore, PushRejected
from test_store import MIXED, Clock, assert_index_exact

BODIES = [
    MIXED,
    '# TYPE c counter\nc{k="1"} 5\n',
    '# TYPE c gauge\nc{k="9"} 1\n',  # refused where c is a counter elsewhere
    '# HELP g a gauge\n# TYPE g gauge\ng{k="1"} 1\ng{k="2"} 2\n',
    'g{k="1"} 3\nu 1\n',
    '# TYPE h histogram\nh_bucket{k="2",le="1"} 1\nh_sum{k="2"} 2\nh_count{k="2"} 2\n',  # +Inf added
    "x_total 1\n",
    "",
]


def view(store: MetricStore) -> dict:
    """Everything a replica shows: groups, times, quarantine, the scrape body."""
    return {
        "groups": {
            key: (g.push_time, g.failure_time, g.ttl, g.problem,
                  sorted((n, f.lines, f.help, f.type, f.pushed_at, f.sort_key, f.utf8, f.added_inf)
                         for n, f in g.families.items()),
                  sorted((n, f.lines) for n, f in g.quarantined.items()))
            for key, g in store.groups.items()
        },
        "scrape": store.render(),
        "series": store.series_count,
    }


def random_changes(store: MetricStore, rng: random.Random) -> list[Change]:
    """One random operation on ``store``: what it changed (a refusal changes failure times)."""
    grouping = {"job": rng.choice("ab"), **({"instance": "i"} if rng.random() < 0.3 else {})}
    roll = rng.random()
    if roll < 0.1:
        change = store.delete(grouping)
        return [change] if change else []
    if roll < 0.12:
        return store.wipe()
    try:
        return [store.push(grouping, parse_text(rng.choice(BODIES).encode()), replace=rng.random() < 0.6,
                           ttl=rng.choice([None, 0.0, 30.0]))]
    except PushRejected as refused:
        return [refused.change]
    except (Inconsistency, LimitExceeded):
        return []


def outcome(store: MetricStore, body: str) -> str | None:
    """Why ``store`` refuses a PUT of ``body`` to {job="c"}, or None when it takes it."""
    try:
        store.push({"job": "c"}, parse_text(body.encode()), replace=True)
    except (Inconsistency, PushRejected) as err:
        return str(err)
    return None


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("checked", [True, False])
def test_a_follower_taking_in_the_log_holds_what_the_origin_holds(seed, checked):
    rng = random.Random(seed)
    origin = MetricStore(clock=Clock(), check_consistency=checked)
    follower = MetricStore(clock=Clock(), check_consistency=checked)
    for _ in range(60):
        changes = []
        for _ in range(rng.randint(1, 4)):  # a batch: several operations, one entry
            changes += random_changes(origin, rng)
        writes = [group_write(origin, key, names) for key, names in merge(changes)]
        take_in(follower, changelog.decode(changelog.encode(writes)))
        assert view(follower) == view(origin)
    assert_index_exact(follower)
    # The follower's index is the origin's: the same pushes are refused or taken on both.
    for body in BODIES:
        assert outcome(origin, body) == outcome(follower, body)
    assert_index_exact(follower)


def test_entries_carry_bytes_as_they_are():
    rows = {
        "n": FamilyRow("n", "gauge", "h\u00e9lp", 1.25, b'n{l="\xc3\xa9\\n"} 1\n', (0, 2), True,
                       b"\x00\xffproto", (2, ("a", "\u00e9")), bytes(range(16)), True),
        "gone": None,
    }
    writes = [GroupWrite('[["job","x"]]', (1.5, 0.0, 30.0, "why"), rows, replace_all=False),
              GroupWrite('[["job","y"]]', None, {}, replace_all=True)]
    assert changelog.decode(changelog.encode(writes)) == writes


def test_a_truncated_entry_is_refused():
    entry = changelog.encode([GroupWrite('[["job","x"]]', (1.0, 0.0, 0.0, None),
                                         {"n": FamilyRow("n", "gauge", "", 1.0, b"n 1\n")}, True)])
    with pytest.raises(ValueError):
        changelog.decode(entry + b"x")
