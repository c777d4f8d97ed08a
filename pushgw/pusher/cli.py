"""Command lines of ``pushgw push`` and ``pushgw exec`` (argparse).

Both share the options of the gateway, the group, credentials, TLS,
timeouts and the spool. Durations take Go's form (``10s``, ``1m30s``,
``3d``) or plain seconds. Secrets never come from the command line itself:
the password from ``--password-file`` or an environment variable, the
bearer token from ``--bearer-token-file``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from urllib.parse import urlsplit

from pushgw.durations import format_duration, parse_duration
from pushgw.pusher.path import GroupingError, check_label_name, group_path
from pushgw.pusher.push import Push, Retries, Say, Transport, read_secret
from pushgw.pusher.run import EXIT_USAGE, deliver, spool_push

GATEWAY_ENV = "PUSHGW_URL"
PASSWORD_ENV = "PUSHGW_PASSWORD"
SPOOL_ENV = "PUSHGW_SPOOL"

# pushgw exec's own trouble (a bad command line: the command was not run),
# kept apart from the command's codes as env(1) and timeout(1) do.
EXIT_EXEC_USAGE = 125

EXIT_CODES = """exit codes: 0 pushed; 2 bad command line or body (nothing sent);
3 refused by the gateway (a 4xx, its message printed); 4 unreachable or
failing after the retries (spooled, with --spool)."""


class UsageError(Exception):
    """A command line that cannot be used; the message says why."""


def _duration(text: str) -> float:
    """argparse type: ``10s``, ``1m30s``, ``3d`` or plain seconds; not negative."""
    try:
        seconds = float(text) if _is_number(text) else parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return seconds


def _is_number(text: str) -> bool:
    return text.replace(".", "", 1).isdigit()


def _label(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: want NAME=VALUE")
    try:
        check_label_name(name)
    except GroupingError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name, value


def _common_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("gateway and group")
    group.add_argument("--gateway", metavar="URL", default=os.environ.get(GATEWAY_ENV),
                       help=f"base URL of the Pushgateway, e.g. http://pushgw:9091 (default: ${GATEWAY_ENV})")
    group.add_argument("--job", help="the job label of the group")
    group.add_argument("--label", "-l", metavar="NAME=VALUE", type=_label, action="append", default=[],
                       help="another grouping label (repeatable)")
    group.add_argument("--ttl", metavar="DURATION", type=_duration,
                       help="send a Pushgateway-TTL header: pushgw drops the group this long after its last push")

    http = parser.add_argument_group("HTTP")
    http.add_argument("--gzip", action="store_true", help="compress the body (Content-Encoding: gzip)")
    http.add_argument("--user", help="basic auth user; the password comes from --password-file "
                                     "or the environment variable named by --password-env")
    http.add_argument("--password-file", metavar="FILE", help="file holding the basic auth password")
    http.add_argument("--password-env", metavar="VAR", default=PASSWORD_ENV,
                      help=f"environment variable holding the password (default: {PASSWORD_ENV})")
    http.add_argument("--bearer-token-file", metavar="FILE", help="file holding a bearer token")
    http.add_argument("--ca-file", metavar="FILE", help="CA certificates to verify an https gateway")
    http.add_argument("--cert-file", metavar="FILE", help="client certificate (PEM) for https")
    http.add_argument("--key-file", metavar="FILE", help="key of the client certificate, if not in --cert-file")
    http.add_argument("--timeout", metavar="DURATION", type=_duration, default=10.0,
                      help="time limit of one attempt (default: 10s)")
    http.add_argument("--retries", metavar="N", type=int, default=5,
                      help="retries after a connection error, timeout, 408, 429 or 5xx (default: 5)")
    http.add_argument("--retry-max-time", metavar="DURATION", type=_duration, default=30.0,
                      help="time limit of everything sent by this run, retries included (default: 30s)")

    spool = parser.add_argument_group("spool")
    spool.add_argument("--spool", metavar="DIR", default=os.environ.get(SPOOL_ENV) or None,
                       help="keep pushes that could not be sent in DIR and send them first next time "
                            f"(default: ${SPOOL_ENV}, else no spool)")
    spool.add_argument("--spool-max-age", metavar="DURATION", type=_duration, default=3 * 86400.0,
                       help="drop spooled pushes older than this (default: 3d)")
    parser.add_argument("--verbose", "-v", action="store_true", help="say what was sent and retried")


def push_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pushgw push",
        description="Push a text exposition body to a Pushgateway group (PUT: replace the group).",
        epilog=EXIT_CODES)
    method = parser.add_mutually_exclusive_group()
    method.add_argument("--add", action="store_true", help="POST: replace only the pushed families")
    method.add_argument("--delete", action="store_true", help="DELETE the group")
    method.add_argument("--flush-spool", action="store_true",
                        help="only send what --spool holds for this gateway")
    parser.add_argument("file", nargs="?", metavar="FILE|-", help="the body (default: stdin)")
    _common_options(parser)
    return parser


def exec_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pushgw exec",
        description="Run a command, then push its duration, exit code and last success/failure "
                    "time (POST); exits with the command's exit code.",
        epilog="Exit code: the command's (128+N after signal N, 127 not found, 126 not runnable), "
               "whatever happens to the push, which costs at most --retry-max-time; "
               f"{EXIT_EXEC_USAGE} for a bad command line (the command is not run).")
    parser.add_argument("--prefix", default="job", help="name prefix of the metrics (default: job)")
    parser.add_argument("--metrics-file", metavar="FILE",
                        help="a text exposition file the command writes; its families are pushed too")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    _common_options(parser)
    return parser


def _gateway(value: str | None) -> str:
    if not value:
        raise UsageError(f"--gateway (or ${GATEWAY_ENV}) is required")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--gateway {value!r}: want http://host:port or https://host:port[/prefix]")
    if parts.username or parts.password:
        raise UsageError("--gateway must not hold credentials: use --user and --password-file")
    if parts.query or parts.fragment:
        raise UsageError(f"--gateway {value!r}: no query or fragment, please")
    return value.rstrip("/")


def _transport(args: argparse.Namespace) -> Transport:
    authorization = None
    if args.user is not None:
        if args.password_file:
            password = read_secret(args.password_file)
        elif args.password_env in os.environ:
            password = os.environ[args.password_env]
        else:
            raise UsageError(f"--user needs --password-file or ${args.password_env}")
        authorization = Transport.basic_auth(args.user, password)
    elif args.password_file:
        raise UsageError("--password-file needs --user")
    if args.bearer_token_file:
        if authorization:
            raise UsageError("--user and --bearer-token-file exclude each other")
        authorization = "Bearer " + read_secret(args.bearer_token_file)
    if args.key_file and not args.cert_file:
        raise UsageError("--key-file needs --cert-file")
    transport = Transport(timeout=args.timeout, gzip=args.gzip, authorization=authorization,
                          ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file)
    if urlsplit(args.gateway).scheme == "https":
        try:
            transport.tls_context()  # unusable certificate files are a usage error, not an outage
        except OSError as err:
            raise UsageError(f"cannot use the TLS files (--ca-file, --cert-file, --key-file): {err}") from None
    return transport


def _ttl_header(args: argparse.Namespace) -> str | None:
    return None if args.ttl is None else format_duration(args.ttl)


def _path(args: argparse.Namespace) -> str:
    if not args.job:
        raise UsageError("--job is required")
    labels = dict(args.label)
    if len(labels) != len(args.label):
        raise UsageError("a --label name is given twice")
    return group_path(args.job, labels)


def _spool(args: argparse.Namespace):
    if not args.spool:
        return None
    from pushgw.pusher.spool import Spool  # json, fcntl: only when spooling

    return Spool(args.spool)


def _reporter(prog: str) -> Say:
    def say(message: str) -> None:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
    return say


def _read_body(name: str | None) -> bytes:
    if name in (None, "-"):
        return sys.stdin.buffer.read()
    with open(name, "rb") as f:
        return f.read()


def push_main(argv: list[str]) -> int:
    """``pushgw push ...``; returns the exit code."""
    parser = push_parser()
    args = parser.parse_args(argv)
    say = _reporter(parser.prog)
    try:
        gateway = _gateway(args.gateway)
        transport = _transport(args)
        spool = _spool(args)
        if args.flush_spool:
            if spool is None:
                raise UsageError("--flush-spool needs --spool (or $PUSHGW_SPOOL)")
            if args.file is not None or args.job:
                raise UsageError("--flush-spool takes no --job and no FILE")
            push = None
        elif args.delete:
            if args.file is not None:
                raise UsageError("--delete takes no FILE")
            push = Push("DELETE", gateway, _path(args), ttl=_ttl_header(args))
        else:
            path = _path(args)
            body = _read_body(args.file)
            push = Push("POST" if args.add else "PUT", gateway, path, body,
                        _ttl_header(args), _family_names(body, args.file or "<stdin>"))
    except (UsageError, GroupingError, OSError) as err:
        say(str(err))
        return EXIT_USAGE
    retries = Retries(deadline=time.monotonic() + args.retry_max_time, retries=args.retries)
    try:
        return deliver(push, gateway, transport, retries, spool, args.spool_max_age,
                       say, say if args.verbose else None)
    except KeyboardInterrupt:
        say("interrupted")
        return 128 + 2


def _family_names(body: bytes, source: str) -> tuple[str, ...]:
    """The families of a body the strict parser accepts; UsageError saying where it is wrong."""
    from pushgw.exposition.text_parser import ParseError, parse_text

    try:
        return tuple(parse_text(body))
    except ParseError as err:
        raise UsageError(f"{source}: {err}; nothing sent") from None


def exec_main(argv: list[str]) -> int:
    """``pushgw exec ... -- CMD [ARGS...]``; returns the command's exit code."""
    parser = exec_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse: 0 after --help, 2 for a usage error
        return EXIT_EXEC_USAGE if stop.code else 0
    say = _reporter(parser.prog)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    from pushgw.pusher import exec as job  # subprocess and the parser: only here

    try:
        if not command:
            raise UsageError("no command given: pushgw exec [options] -- CMD [ARGS...]")
        job.check_prefix(args.prefix)
        gateway = _gateway(args.gateway)
        transport = _transport(args)
        path = _path(args)
        spool = _spool(args)
    except (UsageError, GroupingError, ValueError, OSError) as err:
        say(str(err))
        return EXIT_EXEC_USAGE
    result = job.run_command(command, say)
    body, families = job.report_body(result, args.prefix)
    if args.metrics_file:
        extra, extra_families = job.metrics_file_body(args.metrics_file, result, set(families), say)
        body += extra
        families += extra_families
    push = Push("POST", gateway, path, body, _ttl_header(args), tuple(families), created=result.ended)
    retries = Retries(deadline=time.monotonic() + args.retry_max_time, retries=args.retries)
    _deliver_report(push, gateway, transport, retries, spool, args, say)
    return result.exit_code


def _deliver_report(push: Push, gateway: str, transport: Transport, retries: Retries,
                    spool, args: argparse.Namespace, say: Say) -> None:
    """Push exec's report: nothing here may change the command's exit code, a signal included.

    SIGINT or SIGTERM while pushing abandons the push (spooled, if there is a spool).
    """
    import signal

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        deliver(push, gateway, transport, retries, spool, args.spool_max_age,
                say, say if args.verbose else None)
    except KeyboardInterrupt:
        say(f"interrupted: {push.describe()} abandoned")
        if spool is not None:
            spool_push(push, spool, say)
    except Exception as err:  # noqa: BLE001 - the job's exit code matters more than our trouble
        say(f"push failed: {type(err).__name__}: {err}")

