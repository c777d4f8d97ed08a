"""The ``pushgw`` command: a client subcommand, or else the server (flags and file, logging, serve).

Subcommands are looked up before anything of the server is imported, so
``pushgw push`` starts as fast as a small script. Everything else is the
server's command line, parsed as the official Pushgateway's flags.
"""

from __future__ import annotations

import importlib
import sys

# First argument -> "module:function(argv) -> exit code", imported only when used.
SUBCOMMANDS = {
    "push": "pushgw.pusher.cli:push_main",
    "exec": "pushgw.pusher.cli:exec_main",
    "migrate": "pushgw.migrate:main",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in SUBCOMMANDS:
        module, function = SUBCOMMANDS[args[0]].split(":")
        return getattr(importlib.import_module(module), function)(args[1:])
    return serve_main(args)


def serve_main(args: list[str]) -> int:
    from pushgw.config import ConfigError, load_settings
    from pushgw.logs import setup_logging

    try:
        settings = load_settings(args)
    except ConfigError as err:
        print(f"pushgw: error: {err}, try --help", file=sys.stderr)
        return 1
    setup_logging(settings.log_level, settings.log_format)
    from pushgw.server import serve  # after logging, so start-up messages are formatted
    from pushgw.storage.engine import DatabaseError

    try:
        return serve(settings)
    except (OSError, DatabaseError, ConfigError) as err:  # ConfigError: the web config file changed
        print(f"pushgw: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
