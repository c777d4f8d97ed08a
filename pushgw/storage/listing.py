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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter

from pushgw.storage.store import Group, MetricStore, group_label_order

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
    end = offset + limit
    if match is None:  # counted in C; the page or the heap sees every group
        page.matching = len(groups)
        if stale_before is not None:
            page.stale = sum(1 for g in groups.values() if g.push_time < stale_before)
    if order == "labels":
        if match is not None:
            return _labels_filtered(store, match, offset, end, stale_before, page)
        live = (g for g in store.groups_by_labels() if not g.removed)
        page.groups = list(islice(live, offset, end))
        return page
    # By last push. Pushed again and again, the groups created later tend to be newer.
    candidates: Iterator[Group] = reversed(groups.values()) if order == "newest" else iter(groups.values())
    if match is not None:
        candidates = _passing(candidates, match, stale_before, page)
    pick = heapq.nlargest if order == "newest" else heapq.nsmallest
    page.groups = pick(end, candidates, key=_push_time)[offset:]
    return page


def _labels_filtered(store: MetricStore, match: Callable[[dict[str, str]], bool], offset: int, end: int,
                     stale_before: float | None, page: GroupPage) -> GroupPage:
    """A filtered page by labels: a heap when few groups match, else a walk of the kept order.

    Walking 100k groups in label order is slow (they lie all over memory);
    the filter runs over them in the store's order first, and a heap over
    what matched costs a sort key per match.
    """
    matched = list(_passing(iter(store.groups.values()), match, stale_before, page))
    if len(matched) * 4 <= len(store.groups):
        page.groups = heapq.nsmallest(end, matched, key=group_label_order)[offset:]
    else:
        wanted = {id(g) for g in matched}
        ordered = (g for g in store.groups_by_labels() if not g.removed and id(g) in wanted)
        page.groups = list(islice(ordered, offset, end))
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
