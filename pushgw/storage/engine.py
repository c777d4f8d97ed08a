"""What the store needs from a database, whichever one runs.

Two engines hold the rows of pushgw/storage/rows.py: SQLite, one file for
one node (pushgw/storage/sqlite.py), and PostgreSQL, shared by the replicas
of a cluster (pushgw/storage/postgres.py). The writer, the gateway and
``pushgw migrate`` use them through this interface only.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pushgw.storage.rows import GroupRow, GroupWrite

if TYPE_CHECKING:
    from pushgw.storage.checkpoint import ChangedGroups


class DatabaseError(Exception):
    """A database that pushgw must not use (foreign, corrupt, newer); the message says why."""


@dataclass(slots=True)
class RemoteChanges:
    """What other replicas committed after this one's position, up to ``position``.

    ``entries`` are the group writes of every transaction in between, one
    list per transaction, to apply in order. A replica that fell out of the
    change log gets ``reload`` instead: the whole state at ``position`` (any
    other group is gone). ``committed_at`` is when the newest one committed.
    """

    position: int
    entries: list[list[GroupWrite]] = field(default_factory=list)
    reload: list[GroupRow] | None = None
    committed_at: float | None = None


class Transaction(Protocol):
    # What other replicas committed since this one's position, for the writer
    # to take in before it applies its batch; None when nothing (or SQLite).
    remote: RemoteChanges | None

    async def write(self, writes: Iterable[GroupWrite]) -> None:
        """The batch's writes: at most once per transaction (PostgreSQL commits here)."""


class Engine(Protocol):
    shared: bool  # other replicas write to it too (then it is a Replicated)

    async def load(self) -> list[GroupRow]: ...

    async def write(self, writes: Iterable[GroupWrite]) -> None:
        """One batch in one transaction (``pushgw migrate``; the writer uses transaction())."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def probe(self) -> None:
        """Raise while the database cannot take writes."""

    async def close(self) -> None: ...


class Replicated(Engine, Protocol):
    """An engine shared by several replicas."""

    position: int  # the log position the local store holds

    async def head(self) -> int:
        """The newest log position committed by any replica."""

    async def changes_since(self, position: int) -> RemoteChanges: ...

    async def notified(self, timeout: float) -> int | None:
        """The next position another replica announced, or None after ``timeout``."""

    # Which groups changed after the newest checkpoint known (pushgw/storage/checkpoint.py).
    changed: ChangedGroups

    async def is_checkpointer(self) -> bool:
        """Whether this replica is the one that writes checkpoints now."""

    async def checkpoint(self, position: int, writes: list[GroupWrite]) -> None:
        """Write the groups changed since the last checkpoint as of ``position`` (whole)."""


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


async def open_engine(target: str) -> Engine:
    """The database at ``target``: a PostgreSQL URL, else an SQLite file (checked first)."""
    if is_postgres_url(target):
        from pushgw.storage.postgres import PostgresDatabase  # asyncpg only when used

        return await PostgresDatabase.open(target)
    from pushgw.storage.sqlite import Database, check_file

    check_file(target)
    return await Database.open(target)
