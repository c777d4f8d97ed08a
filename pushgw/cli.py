"""The ``pushgw`` command: settings from flags and file, logging, then serve."""

from __future__ import annotations

import sys

from pushgw.config import ConfigError, load_settings
from pushgw.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv)
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
