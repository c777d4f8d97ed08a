"""One page of groups for the UI: filtered, counted and ordered without sorting them all.

With 100k groups a page must cost milliseconds. Counting the matching and
stale groups needs one pass over all of them when there is a filter; the
page itself comes from an order kept by the store (by labels:
``MetricStore.groups_by_labels``) or from a heap of ``offset + limit`` groups
(by last push: ``heapq.nsmallest``, O(n log k), as stable as a sort).

Nothing allocated per group may outlive its step: the store holds close to
a million objects at 100k groups, and 100k new tuples kept in a list are
enough to set off a full garbage collection (~200 ms here). So no list of
the groups is built: the filter feeds the page or the heap directly.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter

from pushgw.storage.store import Group, MetricStore

ORDERS = ("labels", "oldest", "newest")  # the first is the default
_push_time = attrgetter("push_time")


@dataclass(slots=True)
class GroupPage:
    total: int  # every group stored
    matching: int  # the groups the filter lets through
    stale: int  # of those, the ones whose last successful push is older than stale_before
    groups: list[Group]  # this page, in order


def select_page(
    store: MetricStore,
    match: Callable[[dict[str, str]], bool] | None,
    order: str,
    offset: int,
    limit: int,
    stale_before: float | None = None,
) -> GroupPage:
    """The groups ``match`` lets through (all for None), ``order``ed, ``limit`` from ``offset``.

    ``order`` is one of ORDERS: by grouping labels (job first, then the
    others by name), or by last successful push, oldest or newest first (a
    group never pushed successfully is the oldest). A group is stale when
    its last successful push is before ``stale_before`` (None: nothing is).
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}")
    groups = store.groups
    page = GroupPage(len(groups), 0, 0, [])
    if order == "labels":
        ordered = (g for g in store.groups_by_labels() if not g.removed)
    elif order == "newest":  # pushed again and again, the later created tend to be newer
        ordered = reversed(groups.values())
    else:
        ordered = iter(groups.values())
    if match is None:  # counted in C; the page or the heap sees every group
        page.matching = len(groups)
        if stale_before is not None:
            page.stale = sum(1 for g in groups.values() if g.push_time < stale_before)
        candidates: Iterable[Group] = ordered
    else:
        candidates = _passing(ordered, match, stale_before, page)
    end = offset + limit
    if order == "labels":
        page.groups = list(islice(candidates, offset, end))
        if match is not None:
            for _ in candidates:  # the rest still has to be counted
                pass
    elif order == "oldest":
        page.groups = heapq.nsmallest(end, candidates, key=_push_time)[offset:]
    else:
        page.groups = heapq.nlargest(end, candidates, key=_push_time)[offset:]
    return page


def _passing(groups: Iterator[Group], match: Callable[[dict[str, str]], bool],
             stale_before: float | None, page: GroupPage) -> Iterator[Group]:
    """The groups ``match`` lets through, counted into ``page`` on the way."""
    for group in groups:
        if match(group.labels):
            page.matching += 1
            if stale_before is not None and group.push_time < stale_before:
                page.stale += 1
            yield group
