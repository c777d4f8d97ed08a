"""Pushes kept on disk while the gateway is unreachable, sent later in order.

One file per push, ``<created ns>-<pid>-<random>.push`` (so names sort by the
time the push was made), holding JSON: method, gateway, path, body
(base64), TTL header, family names, creation time. A file is written to a
``.tmp-`` name in the same folder, fsynced and renamed into place, so a
reader never sees half an entry and several jobs can add entries at once
without a lock. Sending (and pruning) takes ``fcntl.flock`` on ``.lock``, so
two runs never send the same entry twice.

Which older entries for the same group (same gateway and path) a newer one
replaces, so that sending only what is left gives the same group on the
gateway as sending everything in order:

* a newer PUT or DELETE replaces every older entry of the group (PUT sets
  the whole group, DELETE removes it: nothing before them matters);
* a newer POST replaces an older POST whose families it all pushes again
  (POST replaces only the families it pushes); it replaces no older PUT or
  DELETE, whose removal of other families must still happen.

``pushgw exec`` pushes with POST, the same families each run except that a
success sets ``*_last_success_*`` and a failure ``*_last_failure_*``: so the
spool holds at most two entries per exec group (the last success and the
last failure), however long the outage.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pushgw.pusher.push import Push, Say

SUFFIX = ".push"
TMP_PREFIX = ".tmp-"
LOCK_NAME = ".lock"
STALE_TMP_SECONDS = 3600.0  # a .tmp- file this old was left by a crashed writer
LOCK_POLL_SECONDS = 0.02


class Entry:
    """A spooled push and the file it is in."""

    __slots__ = ("file", "push")

    def __init__(self, file: Path, push: Push) -> None:
        self.file = file
        self.push = push


def covers(newer: Push, older: Push) -> bool:
    """Whether sending ``newer`` makes sending ``older`` (same group, earlier) useless."""
    if (newer.gateway, newer.path) != (older.gateway, older.path):
        return False
    if newer.method in ("PUT", "DELETE"):
        return True
    return older.method == "POST" and set(older.families) <= set(newer.families)


class Spool:
    """The spool folder (created, mode 0700, on first write)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def add(self, push: Push) -> Path:
        """Write ``push`` as a new entry, atomically; returns its file."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{int(push.created * 1e9):020d}-{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}"
        data = json.dumps({
            "version": 1, "method": push.method, "gateway": push.gateway, "path": push.path,
            "body": base64.b64encode(push.body).decode("ascii"), "ttl": push.ttl,
            "families": list(push.families), "created": push.created,
        }).encode("utf-8")
        tmp = self.folder / (TMP_PREFIX + name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        final = self.folder / name
        os.replace(tmp, final)
        _fsync_dir(self.folder)
        return final

    def entries(self, say: Say) -> list[Entry]:
        """Every entry, oldest first; an unreadable one is dropped with a message."""
        try:
            names = sorted(n for n in os.listdir(self.folder)
                           if n.endswith(SUFFIX) and not n.startswith("."))
        except FileNotFoundError:
            return []
        result = []
        for name in names:
            file = self.folder / name
            try:
                result.append(Entry(file, _load(file.read_bytes())))
            except FileNotFoundError:
                continue  # sent and removed by another run meanwhile
            except (OSError, ValueError, KeyError, TypeError) as err:
                say(f"spool: dropping unreadable entry {file}: {err}")
                remove(file)
        return result

    def prune(self, max_age: float, say: Say) -> list[Entry]:
        """Drop entries older than ``max_age`` or replaced by a newer one; what is left."""
        now = time.time()
        self._drop_stale_tmp(now)
        kept: list[Entry] = []
        for entry in self.entries(say):
            age = now - entry.push.created
            if age > max_age:
                say(f"spool: dropping {entry.push.describe()} made {age:.0f}s ago "
                    f"(older than --spool-max-age)")
                remove(entry.file)
                continue
            for older in [e for e in kept if covers(entry.push, e.push)]:
                kept.remove(older)
                remove(older.file)
            kept.append(entry)
        return kept

    def _drop_stale_tmp(self, now: float) -> None:
        try:
            names = [n for n in os.listdir(self.folder) if n.startswith(TMP_PREFIX)]
        except FileNotFoundError:
            return
        for name in names:
            file = self.folder / name
            try:
                if now - file.stat().st_mtime > STALE_TMP_SECONDS:
                    remove(file)
            except FileNotFoundError:
                pass

    @contextmanager
    def locked(self, timeout: float) -> Iterator[bool]:
        """Hold the spool's lock; yields False if another run held it for ``timeout`` seconds."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(LOCK_POLL_SECONDS)
            yield True
        finally:
            os.close(fd)  # releases the lock


def remove(file: Path) -> None:
    try:
        file.unlink()
    except FileNotFoundError:
        pass


def _load(data: bytes) -> Push:
    raw = json.loads(data)
    if raw.get("version") != 1:
        raise ValueError(f"unknown entry version {raw.get('version')!r}")
    return Push(
        method=raw["method"], gateway=raw["gateway"], path=raw["path"],
        body=base64.b64decode(raw["body"]), ttl=raw["ttl"],
        families=tuple(raw["families"]), created=float(raw["created"]),
    )


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
