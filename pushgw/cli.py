"""The ``pushgw`` command: settings from flags and file, logging, then serve.

A first argument naming a subcommand (``pushgw migrate ...``) runs that
instead; each lives in its own module, imported only when asked for.
"""

from __future__ import annotations

import importlib
import sys

from pushgw.config import ConfigError, load_settings
from pushgw.logs import setup_logging

# subcommand -> module with main(argv) -> exit code
SUBCOMMANDS = {
    "migrate": "pushgw.migrate",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in SUBCOMMANDS:
        return importlib.import_module(SUBCOMMANDS[args[0]]).main(args[1:])
    try:
        settings = load_settings(args)
    except ConfigError as err:
        print(f"pushgw: error: {err}, try --help", file=sys.stderr)
        return 1
    setup_logging(settings.log_level, settings.log_format)
    from pushgw.server import serve  # after logging, so start-up messages are formatted
    from pushgw.storage.sqlite import DatabaseError

    try:
        return serve(settings)
    except (OSError, DatabaseError, ConfigError) as err:  # ConfigError: the web config file changed
        print(f"pushgw: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
