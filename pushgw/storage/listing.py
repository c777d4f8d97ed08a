"""One page of groups for the UI: filtered, counted and ordered without sorting them all.

With 100k groups a page must cost milliseconds. Counting the matching and
stale groups needs one pass over all of them anyway; the page itself is then
the ``offset + limit`` smallest under the chosen order (``heapq.nsmallest``,
O(n log k), as stable as a sort), so the first pages never sort the rest.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from pushgw.grouping import GroupKey
from pushgw.storage.store import Group

ORDERS = ("labels", "oldest", "newest")  # the first is the default


@dataclass(slots=True)
class GroupPage:
    total: int  # every group stored
    matching: int  # the groups the filter lets through
    stale: int  # of those, the ones whose last successful push is older than stale_before
    groups: list[Group]  # this page, in order


def _by_labels(item: tuple[GroupKey, Group]) -> tuple:
    """job first, then the other labels by name (the key is sorted by name), as the page shows them."""
    return item[1].labels.get("job", ""), item[0]


def _by_push_time(item: tuple[GroupKey, Group]) -> float:
    return item[1].push_time


def select_page(
    groups: dict[GroupKey, Group],
    match: Callable[[dict[str, str]], bool] | None,
    order: str,
    offset: int,
    limit: int,
    stale_before: float | None = None,
) -> GroupPage:
    """The groups ``match`` lets through (all for None), ``order``ed, ``limit`` from ``offset``.

    ``order`` is one of ORDERS: by grouping labels, or by last successful
    push, oldest or newest first (a group never pushed successfully is the
    oldest). A group is stale when its last successful push is before
    ``stale_before`` (None: nothing is stale).
    """
    items = list(groups.items()) if match is None else [
        item for item in groups.items() if match(item[1].labels)]
    stale = 0
    if stale_before is not None:
        stale = sum(1 for _, g in items if g.push_time < stale_before)
    end = offset + limit
    if order == "labels":
        chosen = heapq.nsmallest(end, items, key=_by_labels)
    elif order == "oldest":
        chosen = heapq.nsmallest(end, items, key=_by_push_time)
    elif order == "newest":
        chosen = heapq.nlargest(end, items, key=_by_push_time)
    else:
        raise ValueError(f"unknown order {order!r}")
    return GroupPage(len(groups), len(items), stale, [g for _, g in chosen[offset:end]])
