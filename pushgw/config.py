"""Settings: the official Pushgateway's command-line flags, plus a YAML file.

pushgw replaces the official binary in existing deployments, so the flags
keep the official names, defaults and kingpin's parsing rules:

* ``--flag=value`` and ``--flag value``; boolean flags as ``--flag`` and
  ``--no-flag`` (``--flag=true`` is an error, as in kingpin);
* a flag given twice is an error unless it is repeatable
  (``--web.listen-address``); unknown flags and positional arguments are
  errors; ``--`` ends the flags; ``@FILE`` expands to FILE's lines;
* ``-h``/``--help`` and ``--version`` print to stdout and exit 0.

``--config.file=PATH`` (pushgw only) reads the same settings from YAML; flags
given on the command line win over the file, defaults apply last.

``FLAGS`` is the single source of truth: to add a flag, add one row there
and the matching field to ``Settings``.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import sys
import textwrap
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pushgw
from pushgw.durations import format_duration, parse_duration  # noqa: F401 (re-exported)


class ConfigError(Exception):
    """The command line or the config file cannot be used; the message says why."""


@dataclass(frozen=True)
class Flag:
    """One command-line flag and its config-file key."""

    name: str  # without the leading "--"
    field: str  # attribute of Settings
    kind: str  # "string", "bool", "duration", "url" or "choice"
    default: str  # as kingpin's Default(...): parsed like a command-line value
    help: str
    repeatable: bool = False
    choices: tuple[str, ...] = ()
    in_file: bool = True  # may be set in the YAML file

    @property
    def file_key(self) -> tuple[str, str]:
        """YAML location: ``web.listen-address`` -> ("web", "listen_address")."""
        section, _, rest = self.name.partition(".")
        return section, rest.replace("-", "_").replace(".", "_")


FLAGS: tuple[Flag, ...] = (
    Flag("web.listen-address", "listen_addresses", "string", ":9091",
         "Address to listen on (host:port or :port). Repeatable.", repeatable=True),
    Flag("web.config.file", "web_config_file", "string", "",
         "Path to a web config file (exporter-toolkit format) enabling TLS, basic auth and headers."),
    Flag("web.systemd-socket", "systemd_socket", "bool", "false",
         "Use systemd socket activation (not supported yet)."),
    Flag("web.telemetry-path", "telemetry_path", "string", "/metrics",
         "Path under which pushgw's own and the pushed metrics are exposed."),
    Flag("web.external-url", "external_url", "url", "",
         "URL under which pushgw is reachable from outside."),
    Flag("web.route-prefix", "route_prefix", "string", "",
         "Prefix of all internal routes; defaults to the path of --web.external-url."),
    Flag("web.enable-lifecycle", "enable_lifecycle", "bool", "false",
         "Allow shutting down via HTTP (PUT/POST /-/quit)."),
    Flag("web.enable-admin-api", "enable_admin_api", "bool", "false",
         "Enable admin endpoints (PUT /api/v1/admin/wipe)."),
    Flag("persistence.file", "persistence_file", "string", "",
         "File the metrics are saved to; empty keeps them in memory only."),
    Flag("persistence.url", "persistence_url", "string", "",
         "PostgreSQL URL (postgresql://USER@HOST:PORT/DB?sslmode=...) of a database shared by "
         "every replica of one gateway, instead of --persistence.file. Credentials may come "
         "from PGPASSWORD or PGPASSFILE."),
    Flag("persistence.interval", "persistence_interval", "duration", "5m",
         "Accepted for compatibility; pushgw commits every change before answering."),
    Flag("push.max-body-size", "max_body_size", "bytes", "64MiB",
         "Largest push body accepted, as sent (compressed or not); larger ones get 413."),
    Flag("push.max-decompressed-size", "max_decompressed_size", "bytes", "256MiB",
         "Largest push body after gzip or snappy decompression; larger ones get 413."),
    Flag("push.max-series-per-push", "max_series_per_push", "int", "500000",
         "Most series one push may carry (0: no limit); more is refused with 400."),
    Flag("push.max-labels-per-series", "max_labels_per_series", "int", "128",
         "Most labels a pushed series may have (0: no limit); more is refused with 400."),
    Flag("push.max-label-value-length", "max_label_value_length", "int", "65536",
         "Longest label value a push may carry, in characters (0: no limit); 400 beyond."),
    Flag("push.workers", "push_workers", "int", "2",
         "Processes that parse and render big pushes, so they use every core (0: none)."),
    Flag("push.template-lines", "push_template_lines", "int", "100000",
         "Lines of templates of repeated big pushes each preparing process keeps (0: none)."),
    Flag("store.max-groups", "max_groups", "int", "500000",
         "Most groups stored (0: no limit); a push that would add one more gets 429."),
    Flag("store.max-series", "max_series", "int", "5000000",
         "Most series stored (0: no limit); a push that would exceed it gets 429."),
    Flag("web.read-timeout", "read_timeout", "duration", "1m",
         "Longest time a client may take to send a push body; slower ones get 408."),
    Flag("web.idle-timeout", "idle_timeout", "duration", "2m",
         "How long an idle keep-alive connection is kept open."),
    Flag("metric.timetolive", "metric_timetolive", "duration", "0",
         "Default time to live of a group after its last successful push; 0 keeps groups forever."),
    Flag("push.disable-consistency-check", "disable_consistency_check", "bool", "false",
         "Accept pushes without checking their consistency. Dangerous."),
    Flag("push.enable-utf8-names", "enable_utf8_names", "bool", "false",
         "Allow UTF-8 characters in metric and label names (U__-escaped label names in push paths)."),
    Flag("log.level", "log_level", "choice", "info",
         "Lowest severity that is logged.", choices=("debug", "info", "warn", "error")),
    Flag("log.format", "log_format", "choice", "logfmt",
         "Log line format.", choices=("logfmt", "json")),
    Flag("config.file", "config_file", "string", "",
         "YAML file with settings; command-line flags override it.", in_file=False),
)

_BY_NAME = {flag.name: flag for flag in FLAGS}
_BY_FILE_KEY = {flag.file_key: flag for flag in FLAGS if flag.in_file}


@dataclass(frozen=True)
class Settings:
    """Effective settings; the defaults equal the official Pushgateway's."""

    listen_addresses: list[str] = field(default_factory=lambda: [":9091"])
    web_config_file: str = ""
    systemd_socket: bool = False
    telemetry_path: str = "/metrics"
    external_url: str = ""
    route_prefix: str = ""  # the raw flag value; see effective_route_prefix
    enable_lifecycle: bool = False
    enable_admin_api: bool = False
    persistence_file: str = ""
    persistence_url: str = ""  # PostgreSQL, shared by the replicas of one gateway
    persistence_interval: float = 300.0  # seconds; accepted, unused: every change is committed
    metric_timetolive: float = 0.0  # seconds; 0 means groups never expire
    max_body_size: int = 64 * 1024 * 1024  # bytes
    max_series_per_push: int = 500_000
    max_labels_per_series: int = 128
    max_label_value_length: int = 65_536
    push_workers: int = 2
    push_template_lines: int = 100_000
    max_groups: int = 500_000
    max_series: int = 5_000_000
    read_timeout: float = 60.0  # seconds
    idle_timeout: float = 120.0  # seconds
    max_decompressed_size: int = 256 * 1024 * 1024  # bytes
    disable_consistency_check: bool = False
    enable_utf8_names: bool = False
    log_level: str = "info"
    log_format: str = "logfmt"
    config_file: str = ""

    @property
    def effective_route_prefix(self) -> str:
        """Prefix for internal routes ("" or "/x", never a trailing "/")."""
        return compute_route_prefix(self.route_prefix, self.external_url)

    @property
    def external_path_prefix(self) -> str:
        """Path prefix under which clients see pushgw (for links in the UI)."""
        return compute_route_prefix("", self.external_url)


# --- sizes (durations are in pushgw/durations.py, shared with the pusher) ---

_SIZE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2,
    "GB": 1000**3, "GiB": 1024**3,
}


def parse_size(text: str) -> int:
    """Bytes from ``1048576``, ``512KiB``, ``64MiB``, ``1GB``; ValueError otherwise."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f'invalid size "{text}": want a number of bytes, optionally with B, KB, KiB, MB, MiB, GB or GiB')
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def format_size(size: int) -> str:
    """The shortest exact form: ``64MiB``, ``1000``."""
    for unit in ("GiB", "MiB", "KiB"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)


# --- URLs, prefixes, addresses -----------------------------------------------

def _url_path(url: str) -> str:
    """The decoded path of url, as Go's url.URL.Path (opaque URLs have none)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme and not parts.netloc and not parts.path.startswith("/"):
        return ""  # Go treats "scheme:rest" as opaque, with an empty Path
    return urllib.parse.unquote(parts.path)


def check_url(url: str) -> None:
    """Raise ValueError for URLs Go's url.Parse rejects (the common cases)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError(f'invalid URL "{url}": control character')
    if url.startswith(":"):
        raise ValueError(f'invalid URL "{url}": missing protocol scheme')
    bad_escape = re.search(r"%(?![0-9A-Fa-f]{2})", url.split("#", 1)[0])
    if bad_escape:
        raise ValueError(f'invalid URL "{url}": bad %-escape')
    try:
        urllib.parse.urlsplit(url).port
    except ValueError as e:
        raise ValueError(f'invalid URL "{url}": {e}') from None


def compute_route_prefix(prefix: str, external_url: str) -> str:
    """The official computeRoutePrefix: "" -> path of external_url; "/" -> "";
    otherwise a leading "/" is ensured and one trailing "/" removed."""
    if prefix == "":
        prefix = _url_path(external_url)
    if prefix == "/":
        return ""
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix.removesuffix("/")


_ADDRESS = re.compile(r"(\[[^\[\]]*\]|[^:\[\]]*):(\d{1,5})")


def split_listen_address(address: str) -> tuple[str, int]:
    """Split "host:port" / "[v6]:port" / ":port" into (host, port); host ""
    means all interfaces. Raises ValueError for anything else."""
    match = _ADDRESS.fullmatch(address)
    if not match or int(match.group(2)) > 65535:
        raise ValueError(
            f'invalid listen address "{address}": want host:port, [ipv6]:port or :port')
    return match.group(1).strip("[]"), int(match.group(2))


# --- values --------------------------------------------------------------------

def _convert(flag: Flag, raw: str) -> Any:
    """A command-line string (or kingpin default) to the Settings value."""
    if flag.kind == "bool":
        return raw == "true"
    if flag.kind == "duration":
        return parse_duration(raw)
    if flag.kind == "bytes":
        return parse_size(raw)
    if flag.kind == "int":
        if not raw.isdigit():
            raise ValueError(f'invalid number "{raw}": want a whole number, 0 for no limit')
        return int(raw)
    if flag.kind == "url":
        check_url(raw)
    if flag.kind == "choice" and raw not in flag.choices:
        raise ValueError(f'"{raw}" is not one of: {", ".join(flag.choices)}')
    return raw


def _default(flag: Flag) -> Any:
    value = _convert(flag, flag.default)
    return [value] if flag.repeatable else value


def _show(flag: Flag, value: Any) -> str:
    """The Go String() form the official's /api/v1/status shows."""
    if flag.repeatable:
        return ",".join(value)  # kingpin joins accumulated strings with ","
    if flag.kind == "bool":
        return "true" if value else "false"
    if flag.kind == "duration":
        return format_duration(value)
    if flag.kind == "bytes":
        return format_size(value)
    if flag.kind == "int":
        return str(value)
    return value


def flag_values(settings: Settings) -> dict[str, str]:
    """Every flag name -> value string, as the official's /api/v1/status lists them."""
    values = {f.name: _show(f, getattr(settings, f.field)) for f in FLAGS}
    # The official overwrites the flag variable with the computed prefix
    # before building its flags map, so the status shows the effective one.
    values["web.route-prefix"] = settings.effective_route_prefix
    return values


# --- command line ----------------------------------------------------------------

_BUILTINS = ("help", "version")  # kingpin's own flags, not shown on the status page


def _expand_at_files(argv: list[str]) -> list[str]:
    """kingpin's @FILE arguments: replaced by FILE's non-blank, non-# lines."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        if not arg.startswith("@"):
            out.append(arg)
            continue
        try:
            with open(arg[1:], encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise ConfigError(f'failed to open arguments file "{arg[1:]}": {e.strerror}') from None
        out += [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    return out


def _tokenize(argv: list[str]) -> tuple[list[tuple[str, str]], str | None]:
    """Match arguments to flags as kingpin does: (name, raw value) pairs, in
    order, plus the first syntax error (elements before it are kept, because
    kingpin still honours an earlier --version)."""
    elements: list[tuple[str, str]] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            return elements, f"unexpected {args[0]}" if args else None
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
            invert = False
            if name not in _BY_NAME and name not in _BUILTINS and name.startswith("no-"):
                name, invert = name[3:], True
            flag = _BY_NAME.get(name)
            if flag is None and name not in _BUILTINS:
                return elements, f"unknown long flag '{arg.partition('=')[0]}'"
            if flag is None or flag.kind == "bool":
                elements.append((name, "false" if invert else "true"))
                if has_value:
                    return elements, f"unexpected {value}"
                continue
            if invert:
                return elements, f"unknown long flag '--no-{name}'"
            if not has_value:
                if not args or (args[0].startswith("-") and args[0] != "-"):
                    return elements, f"expected argument for flag '--{name}'"
                value = args.pop(0)
            elements.append((name, value))
        elif arg.startswith("-") and arg != "-":
            if arg[1] != "h":
                return elements, f"unknown short flag '-{arg[1]}'"
            elements.append(("help", "true"))
            if len(arg) > 2:
                args.insert(0, "-" + arg[2:])
        else:
            return elements, f"unexpected {arg}"
    return elements, None


def _from_command_line(elements: list[tuple[str, str]]) -> dict[str, Any]:
    """Flag name -> converted value for the flags given on the command line."""
    given: dict[str, Any] = {}
    for name, raw in elements:
        if name in _BUILTINS:
            continue
        flag = _BY_NAME[name]
        if name in given and not flag.repeatable:
            raise ConfigError(f"flag '{name}' cannot be repeated")
        try:
            value = _convert(flag, raw)
        except ValueError as e:
            raise ConfigError(f"invalid value for --{name}: {e}") from None
        given[name] = given.get(name, []) + [value] if flag.repeatable else value
    return given


# --- config file -------------------------------------------------------------------

def _file_value(flag: Flag, value: Any, where: str) -> Any:
    """Check and convert one YAML value; errors name the key."""
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")

    if flag.repeatable:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise wrong("a string or a non-empty list of strings")
        return [_file_value(dataclasses.replace(flag, repeatable=False), v, where) for v in values]
    if flag.kind == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if flag.kind in ("bytes", "int") and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise wrong('a duration string such as "5m"' if flag.kind == "duration" else "a string")
    try:
        return _convert(flag, value)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _from_file(path: str) -> dict[str, Any]:
    """Flag name -> converted value for every key set in the YAML file."""
    import yaml  # here, not at the top: only --config.file needs it, and it slows every start

    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f'cannot read config file "{path}": {e.strerror}') from None
    except yaml.YAMLError as e:
        raise ConfigError(f'config file "{path}" is not valid YAML: {e}') from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f'config file "{path}": the top level must be a mapping of sections')
    found: dict[str, Any] = {}
    for section, keys in document.items():
        if not isinstance(keys, dict):
            raise ConfigError(f'config file "{path}": section "{section}" must be a mapping')
        for key, value in keys.items():
            where = f'config file "{path}": key "{section}.{key}"'
            flag = _BY_FILE_KEY.get((section, key))
            if flag is None:
                raise ConfigError(f"{where} is unknown")
            found[flag.name] = _file_value(flag, value, where)
    return found


# --- entry point ------------------------------------------------------------------

def _validate(settings: Settings) -> None:
    """Refuse what pushgw cannot honour yet, and bad addresses."""
    if settings.web_config_file:
        from pushgw.web.webconfig import load_web_config  # it imports this module

        load_web_config(settings.web_config_file)  # a bad file stops start-up here
    if settings.systemd_socket:
        raise ConfigError("--web.systemd-socket is not supported yet; use --web.listen-address")
    for address in settings.listen_addresses:
        try:
            split_listen_address(address)
        except ValueError as e:
            raise ConfigError(f"--web.listen-address: {e}") from None


def _one_persistence(given: dict[str, Any], from_file: dict[str, Any]) -> None:
    """SQLite file or PostgreSQL URL, not both; a command-line value wins over
    the file's other one, so an image's default file gives way to a URL flag."""
    both = ("persistence.file", "persistence.url")
    if all(given.get(name) for name in both) or all(from_file.get(name) for name in both):
        raise ConfigError("--persistence.file and --persistence.url exclude each other; give one")
    for name, other in (both, both[::-1]):
        if given.get(name):
            from_file.pop(other, None)
    url = given.get("persistence.url") or from_file.get("persistence.url")
    if url and urllib.parse.urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"--persistence.url: {url!r} is not a postgresql:// URL")


def version_text() -> str:
    """What --version prints."""
    return (f"pushgw, version {pushgw.__version__} "
            f"(python: {platform.python_version()}, "
            f"platform: {sys.platform}/{platform.machine()})")


def usage_text(prog: str = "pushgw") -> str:
    """What --help prints."""
    lines = [f"usage: {prog} [<flags>]", "",
             "A drop-in replacement for the Prometheus Pushgateway.", "", "Flags:"]
    rows = [("-h, --help", "Show this help and exit."),
            ("    --version", "Show the version and exit.")]
    for flag in FLAGS:
        if flag.kind == "bool":
            left = f"    --[no-]{flag.name}"
        else:
            left = f'    --{flag.name}="{flag.default}"' + (" ..." if flag.repeatable else "")
        rows.append((left, flag.help + (f" One of: {', '.join(flag.choices)}." if flag.choices else "")))
    for left, text in rows:
        wrapped = textwrap.wrap(text, 50) or [""]
        if len(left) > 32:
            lines.append("  " + left)
            left = ""
        lines.append(f"  {left:<32} {wrapped[0]}")
        lines += [" " * 35 + more for more in wrapped[1:]]
    return "\n".join(lines)


def load_settings(argv: list[str]) -> Settings:
    """Settings from the command line (without the program name) and the
    --config.file it names. Raises ConfigError; --help/--version print to
    stdout and raise SystemExit(0)."""
    elements, syntax_error = _tokenize(_expand_at_files(argv))
    if any(name == "version" for name, _ in elements):
        print(version_text())
        raise SystemExit(0)
    if syntax_error:
        raise ConfigError(syntax_error)
    if any(name == "help" for name, _ in elements):
        print(usage_text())
        raise SystemExit(0)
    given = _from_command_line(elements)
    from_file = _from_file(given["config.file"]) if given.get("config.file") else {}
    _one_persistence(given, from_file)
    values = {}
    for flag in FLAGS:
        if flag.name in given:
            values[flag.field] = given[flag.name]
        elif flag.name in from_file:
            values[flag.field] = from_file[flag.name]
        else:
            values[flag.field] = _default(flag)
    settings = Settings(**values)
    _validate(settings)
    return settings
