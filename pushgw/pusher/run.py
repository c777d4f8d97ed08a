"""One delivery: spooled pushes first, oldest first, then this run's push.

Without a spool, the push is sent with retries and its outcome is the exit
code. With one, the run takes the spool's lock (waiting at most until the
deadline), drops aged and replaced entries, sends the entries for this
gateway in order and only then its own push, so a group never goes back to
an older state. If an entry cannot be sent (the gateway is still down), the
flush stops there and this run's push is spooled behind it without being
tried. A refused entry (4xx) is dropped with the gateway's message, since it
would be refused again; a 401 or 403 stops the flush and keeps the entries
(the credentials of this run are wrong, not the entries).

Exit codes, for scripts: 0 pushed, 3 refused by the gateway, 4 unreachable
or failing (the push was spooled, if there is a spool); 2 is the usage
error of argparse and of a malformed body (nothing sent).
"""

from __future__ import annotations

from pushgw.pusher.push import Outcome, Push, Retries, Say, Transport, send

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4

AUTH_STATUSES = (401, 403)


def exit_code(outcome: Outcome) -> int:
    if outcome.ok:
        return EXIT_OK
    return EXIT_REFUSED if outcome.kind == "refused" else EXIT_UNREACHABLE


def deliver(push: Push | None, gateway: str, transport: Transport, retries: Retries,
            spool, max_age: float, say: Say, verbose: Say | None) -> int:
    """Send what is spooled for ``gateway`` and then ``push`` (None: only flush).

    ``spool`` is a pushgw.pusher.spool.Spool or None (not imported here: that
    module is loaded only when a spool is used).
    """
    if spool is not None:
        try:
            spool.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            say(f"cannot use the spool: {err}; sending without it")
            spool = None
    if spool is None:
        return _send_own(push, transport, retries, None, say, verbose)
    with spool.locked(max(0.0, retries.remaining())) as locked:
        if not locked:
            say(f"spool {spool.folder} is busy (another run is sending): nothing sent")
            return spool_push(push, spool, say)
        pending = [e for e in spool.prune(max_age, say) if e.push.gateway == gateway]
        for entry in pending:
            outcome = send(entry.push, transport, retries, verbose)
            if outcome.ok:
                if verbose:
                    verbose(f"sent spooled {entry.push.describe()}: {outcome.message}")
                entry.file.unlink(missing_ok=True)
            elif outcome.kind == "refused" and outcome.status not in AUTH_STATUSES:
                say(f"spooled {entry.push.describe()} refused by the gateway, dropped: {outcome.message}")
                entry.file.unlink(missing_ok=True)
            else:
                say(f"spooled {entry.push.describe()} not sent: {outcome.message}")
                spool_push(push, spool, say)
                return exit_code(outcome)
        return _send_own(push, transport, retries, spool, say, verbose)


def _send_own(push: Push | None, transport: Transport, retries: Retries, spool,
              say: Say, verbose: Say | None) -> int:
    if push is None:
        return EXIT_OK
    outcome = send(push, transport, retries, verbose)
    if outcome.ok:
        if verbose:
            verbose(f"{push.describe()}: {outcome.message}")
        return EXIT_OK
    if outcome.kind == "refused":
        say(f"{push.describe()} refused by the gateway: {outcome.message}")
        return EXIT_REFUSED
    say(f"{push.describe()} failed: {outcome.message}")
    if spool is not None:
        return spool_push(push, spool, say)
    return EXIT_UNREACHABLE


def spool_push(push: Push | None, spool, say: Say) -> int:
    """Keep ``push`` (if any) in the spool for the next run; EXIT_UNREACHABLE."""
    if push is not None:
        try:
            spool.add(push)
        except OSError as err:
            say(f"{push.describe()} NOT spooled, it is lost: {err}")
        else:
            say(f"{push.describe()} spooled in {spool.folder}, to be sent by the next run")
    return EXIT_UNREACHABLE
