"""Settings must accept the official Pushgateway's command lines unchanged."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from pathlib import Path

import pytest
import yaml

import pushgw
from pushgw.config import (
    FLAGS,
    ConfigError,
    Settings,
    compute_route_prefix,
    flag_values,
    format_duration,
    load_settings,
    parse_duration,
    split_listen_address,
)
from servers import free_port

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"

# What the official (1.5.1 and HEAD) shows on /api/v1/status with no flags,
# plus push.enable-utf8-names (HEAD), config.file and metric.timetolive (pushgw only).
OFFICIAL_DEFAULT_STATUS_FLAGS = {
    "metric.timetolive": "0s",
    "persistence.url": "",
    "push.max-body-size": "64MiB",
    "push.max-decompressed-size": "256MiB",
    "push.max-series-per-push": "500000",
    "push.max-labels-per-series": "128",
    "push.max-label-value-length": "65536",
    "push.workers": "2",
    "push.template-lines": "100000",
    "store.max-groups": "500000",
    "store.max-series": "5000000",
    "web.read-timeout": "1m0s",
    "web.idle-timeout": "2m0s",
    "log.format": "logfmt",
    "log.level": "info",
    "persistence.file": "",
    "persistence.interval": "5m0s",
    "push.disable-consistency-check": "false",
    "push.enable-utf8-names": "false",
    "web.config.file": "",
    "web.enable-admin-api": "false",
    "web.enable-lifecycle": "false",
    "web.external-url": "",
    "web.listen-address": ":9091",
    "web.route-prefix": "",
    "web.systemd-socket": "false",
    "web.telemetry-path": "/metrics",
    "config.file": "",
}


def write_yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pushgw.yaml"
    path.write_text(text)
    return str(path)


def error_of(argv: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(argv)
    return str(info.value)


# --- defaults and the flag table ---------------------------------------------

def test_defaults_equal_the_official_ones() -> None:
    """No flags: the same values the official runs with."""
    settings = load_settings([])
    assert settings == Settings()
    assert settings.listen_addresses == [":9091"]
    assert settings.persistence_interval == 300.0
    assert flag_values(settings) == OFFICIAL_DEFAULT_STATUS_FLAGS


def test_flag_table_and_settings_fields_match() -> None:
    """A row without a field (or a field without a row) would be silently lost."""
    assert {f.field for f in FLAGS} == {f.name for f in dataclasses.fields(Settings)}
    assert len({f.name for f in FLAGS}) == len(FLAGS)


# --- command-line forms ----------------------------------------------------------

@pytest.mark.parametrize("argv, field, expected", [
    (["--web.telemetry-path=/m"], "telemetry_path", "/m"),
    (["--web.telemetry-path", "/m"], "telemetry_path", "/m"),
    (["--persistence.file="], "persistence_file", ""),
    (["--persistence.file", "-"], "persistence_file", "-"),
    (["--persistence.file=a=b"], "persistence_file", "a=b"),
    (["--persistence.interval=90s"], "persistence_interval", 90.0),
    (["--persistence.interval", "1h"], "persistence_interval", 3600.0),
    (["--web.enable-lifecycle"], "enable_lifecycle", True),
    (["--no-web.enable-lifecycle"], "enable_lifecycle", False),
    (["--web.enable-admin-api"], "enable_admin_api", True),
    (["--push.disable-consistency-check"], "disable_consistency_check", True),
    (["--no-push.enable-utf8-names"], "enable_utf8_names", False),
    (["--no-web.systemd-socket"], "systemd_socket", False),
    (["--log.level=debug"], "log_level", "debug"),
    (["--log.format", "json"], "log_format", "json"),
    (["--web.external-url=http://example.com/gw/"], "external_url", "http://example.com/gw/"),
    (["--web.route-prefix=/p"], "route_prefix", "/p"),
    (["--web.listen-address=127.0.0.1:1", "--web.listen-address", "[::1]:2"],
     "listen_addresses", ["127.0.0.1:1", "[::1]:2"]),
    (["--web.listen-address=:9999"], "listen_addresses", [":9999"]),
])
def test_flag_forms(argv: list[str], field: str, expected: object) -> None:
    assert getattr(load_settings(argv), field) == expected


@pytest.mark.parametrize("argv, message", [
    (["--web.enable-lifecycle", "--web.enable-lifecycle"], "flag 'web.enable-lifecycle' cannot be repeated"),
    (["--no-web.enable-lifecycle", "--web.enable-lifecycle"], "flag 'web.enable-lifecycle' cannot be repeated"),
    (["--web.telemetry-path=/a", "--web.telemetry-path=/b"], "flag 'web.telemetry-path' cannot be repeated"),
    (["--foo"], "unknown long flag '--foo'"),
    (["--foo=bar"], "unknown long flag '--foo'"),
    (["-x"], "unknown short flag '-x'"),
    (["extra"], "unexpected extra"),
    (["--", "--web.enable-lifecycle"], "unexpected --web.enable-lifecycle"),
    (["--web.enable-lifecycle=true"], "unexpected true"),
    (["--no-persistence.file"], "unknown long flag '--no-persistence.file'"),
    (["--persistence.interval"], "expected argument for flag '--persistence.interval'"),
    (["--persistence.interval", "-5m"], "expected argument for flag '--persistence.interval'"),
    (["--persistence.interval=1x"], "--persistence.interval"),
    (["--persistence.interval="], "--persistence.interval"),
    (["--log.level=bogus"], "--log.level"),
    (["--log.format=text"], "--log.format"),
    (["--web.external-url=:foo"], "missing protocol scheme"),
    (["--web.external-url=http://h:port/"], "--web.external-url"),
    (["--web.listen-address=9091"], "invalid listen address"),
    (["--web.listen-address="], "invalid listen address"),
    (["--web.listen-address=:70000"], "invalid listen address"),
    (["--web.listen-address=:9091", "--web.listen-address=a:b:c"], "invalid listen address"),
])
def test_command_line_errors(argv: list[str], message: str) -> None:
    """The official rejects these too (kingpin), so must we."""
    assert message in error_of(argv)


def test_help_prints_usage_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["-h"], ["--help", "--persistence.interval=bad"]):
        with pytest.raises(SystemExit) as info:
            load_settings(argv)
        assert info.value.code in (0, None)
        out = capsys.readouterr().out
        assert "usage: pushgw" in out and "--web.listen-address" in out


def test_help_does_not_hide_syntax_errors() -> None:
    """kingpin reports unknown flags even after --help."""
    assert "unknown long flag '--foo'" in error_of(["--help", "--foo"])


def test_version_wins_over_later_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """As in kingpin: --version acts when seen, before later flags are checked."""
    for argv in (["--version"], ["--version", "--foo"], ["-h", "--version"]):
        with pytest.raises(SystemExit) as info:
            load_settings(argv)
        assert info.value.code in (0, None)
        assert capsys.readouterr().out.startswith(f"pushgw, version {pushgw.__version__} (")
    assert "unknown long flag" in error_of(["--foo", "--version"])


def test_at_file_expands_to_arguments(tmp_path: Path) -> None:
    """kingpin expands @FILE into one argument per line (blank and # lines skipped)."""
    args = tmp_path / "args"
    args.write_text("# comment\n--web.enable-lifecycle\n\n--web.telemetry-path=/x\n")
    settings = load_settings([f"@{args}"])
    assert settings.enable_lifecycle and settings.telemetry_path == "/x"
    assert "failed to open arguments file" in error_of([f"@{tmp_path / 'missing'}"])


# --- config file ----------------------------------------------------------------

def test_file_sets_values_and_flags_win(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, """
web:
  listen_address: ["127.0.0.1:1", "127.0.0.1:2"]
  enable_admin_api: true
  telemetry_path: /from-file
persistence:
  interval: 1m30s
log:
  level: debug
""")
    settings = load_settings([f"--config.file={path}", "--web.telemetry-path=/from-flag",
                              "--no-web.enable-admin-api", "--web.listen-address=:3"])
    assert settings.telemetry_path == "/from-flag"
    assert settings.enable_admin_api is False
    assert settings.listen_addresses == [":3"]  # flags replace the file's list
    assert settings.persistence_interval == 90.0
    assert settings.log_level == "debug"
    assert settings.log_format == "logfmt"  # neither: default
    assert settings.config_file == path


def test_file_single_listen_address_string(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "web: {listen_address: '127.0.0.1:7'}\n")
    assert load_settings(["--config.file", path]).listen_addresses == ["127.0.0.1:7"]


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "# nothing\n")
    assert load_settings([f"--config.file={path}"]) == Settings(config_file=path)


@pytest.mark.parametrize("text, message", [
    ("web: {listen_adress: [':1']}\n", '"web.listen_adress" is unknown'),
    ("nope: {x: 1}\n", '"nope.x" is unknown'),
    ("config: {file: other.yaml}\n", '"config.file" is unknown'),
    ("web: {enable_lifecycle: 'yes'}\n", '"web.enable_lifecycle": expected true or false'),
    ("web: {telemetry_path: 5}\n", '"web.telemetry_path": expected a string'),
    ("web: {listen_address: []}\n", '"web.listen_address": expected a string or a non-empty list'),
    ("web: {listen_address: [9091]}\n", '"web.listen_address"'),
    ("persistence: {interval: 300}\n", '"persistence.interval": expected a duration string'),
    ("persistence: {interval: 5x}\n", '"persistence.interval": invalid duration "5x"'),
    ("log: {level: loud}\n", '"log.level"'),
    ("web: [1, 2]\n", 'section "web" must be a mapping'),
    ("- a\n- b\n", "top level must be a mapping"),
    ("web: {a: [}\n", "not valid YAML"),
])
def test_file_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write_yaml(tmp_path, text)
    assert message in error_of([f"--config.file={path}"])


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    assert "cannot read config file" in error_of([f"--config.file={tmp_path / 'absent.yaml'}"])


def test_example_file_gives_exactly_the_defaults() -> None:
    """config.example.yaml documents the defaults; it must never drift from them."""
    assert load_settings([f"--config.file={EXAMPLE}"]) == Settings(config_file=str(EXAMPLE))


def test_example_file_lists_every_key() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    keys = {(section, key) for section, values in document.items() for key in values}
    assert keys == {f.file_key for f in FLAGS if f.in_file}


# --- refused features ---------------------------------------------------------------

@pytest.mark.parametrize("argv, yaml_text, message", [
    # A web config file that cannot be used (here: missing) refuses start-up too.
    (["--web.config.file=web.yml"], "web: {config_file: web.yml}\n", 'cannot read web config file "web.yml"'),
    (["--web.systemd-socket"], "web: {systemd_socket: true}\n", "--web.systemd-socket is not supported yet"),
])
def test_unsupported_features_refuse_to_start(tmp_path: Path, argv: list[str],
                                              yaml_text: str, message: str) -> None:
    """Silently ignoring e.g. TLS settings would expose what the user meant to protect."""
    assert message in error_of(argv)
    assert message in error_of([f"--config.file={write_yaml(tmp_path, yaml_text)}"])


# --- durations -----------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("0", 0.0), ("+0", 0.0), ("-0", 0.0), ("0s", 0.0),
    ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("1.5h", 5400.0),
    ("500ms", 0.5), ("1us", 1e-6), ("1µs", 1e-6), ("1μs", 1e-6), ("10ns", 1e-8),
    (".5s", 0.5), ("5.s", 5.0), ("1h1h", 7200.0), ("-5m", -300.0), ("+5m", 300.0),
    ("2d", 172800.0), ("1w", 604800.0), ("1w2d3h", 604800.0 + 172800.0 + 10800.0),
    ("1.0000000001s", 1.0),  # Go truncates below the nanosecond
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize("text", [
    "", "-", "1", "5", "1x", "1y", "1 h", " 1h", "h", ".s", ".", "+-5m", "5m-3s",
    "1h ", "1..5s", "99999999999999999999s", "3000000h",
])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (300, "5m0s"), (90, "1m30s"), (3600, "1h0m0s"), (1.5, "1.5s"),
    (0.5, "500ms"), (1, "1s"), (60, "1m0s"), (5400, "1h30m0s"), (172800, "48h0m0s"),
    (0.0015, "1.5ms"), (1e-6, "1µs"), (1.5e-6, "1.5µs"), (1e-9, "1ns"),
    (3600.5, "1h0m0.5s"), (61.000000001, "1m1.000000001s"), (-90, "-1m30s"), (0.1, "100ms"),
])
def test_format_duration_matches_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- route prefix -------------------------------------------------------------------

@pytest.mark.parametrize("prefix, external_url, expected", [
    ("", "", ""),
    ("/", "", ""),
    ("/", "http://example.com/gw", ""),
    ("foo", "", "/foo"),
    ("/foo/", "", "/foo"),
    ("/foo//", "", "/foo/"),  # Go's TrimSuffix removes one "/"
    ("//", "", "/"),
    ("", "http://example.com", ""),
    ("", "http://example.com/", ""),
    ("", "http://example.com/gw/", "/gw"),
    ("", "http://example.com/a/b?x=1#f", "/a/b"),
    ("", "http://example.com/a%20b", "/a b"),
    ("", "example.com/gw", "/example.com/gw"),
    ("", "mailto:x", ""),
    ("/own", "http://example.com/gw", "/own"),
])
def test_compute_route_prefix(prefix: str, external_url: str, expected: str) -> None:
    assert compute_route_prefix(prefix, external_url) == expected


def test_settings_prefix_properties() -> None:
    settings = Settings(external_url="http://example.com/gw/", route_prefix="/")
    assert settings.effective_route_prefix == ""
    assert settings.external_path_prefix == "/gw"


@pytest.mark.parametrize("address, expected", [
    (":9091", ("", 9091)), ("127.0.0.1:80", ("127.0.0.1", 80)),
    ("[::1]:9091", ("::1", 9091)), ("localhost:0", ("localhost", 0)),
])
def test_split_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert split_listen_address(address) == expected


# --- flag_values ---------------------------------------------------------------------

def test_flag_values_use_go_string_forms() -> None:
    settings = load_settings([
        "--web.listen-address=127.0.0.1:1", "--web.listen-address=127.0.0.1:2",
        "--web.external-url=http://example.com/foo/", "--persistence.interval=90s",
        "--web.enable-admin-api",
    ])
    values = flag_values(settings)
    assert values["web.listen-address"] == "127.0.0.1:1,127.0.0.1:2"
    assert values["web.external-url"] == "http://example.com/foo/"
    assert values["web.route-prefix"] == "/foo"  # the computed prefix, as the official shows
    assert values["persistence.interval"] == "1m30s"
    assert values["web.enable-admin-api"] == "true"
    assert values["web.enable-lifecycle"] == "false"


@pytest.mark.parametrize("extra", [
    [],
    ["--web.external-url=http://example.com/foo/", "--persistence.interval=90s"],
    ["--web.route-prefix=bar/", "--web.enable-lifecycle", "--push.disable-consistency-check",
     "--log.level=warn", "--log.format=json", "--web.telemetry-path=/m"],
    ["--persistence.interval=1.5h"],
])
def test_flag_values_match_running_official(make_official, extra: list[str]) -> None:
    """Differential: what the official's /api/v1/status shows for the same flags."""
    second = f"--web.listen-address=127.0.0.1:{free_port()}"
    server = make_official(second, *extra)
    with urllib.request.urlopen(f"{server.url}{server.prefix}/api/v1/status", timeout=5) as resp:
        official = json.load(resp)["data"]["flags"]
    ours = flag_values(load_settings(server.argv[1:]))
    shared = sorted(set(official) & set(ours))
    assert len(shared) >= 13
    assert {k: ours[k] for k in shared} == {k: official[k] for k in shared}


# --- --persistence.url ------------------------------------------------------------

def test_persistence_url_and_file_exclude_each_other_unless_the_command_line_wins(tmp_path) -> None:
    url = "postgresql://pushgw@db:5432/pushgw"
    with pytest.raises(ConfigError, match="exclude each other"):
        load_settings(["--persistence.file=a.db", f"--persistence.url={url}"])
    both = tmp_path / "both.yaml"
    both.write_text(f"persistence: {{file: a.db, url: '{url}'}}\n")
    with pytest.raises(ConfigError, match="exclude each other"):
        load_settings([f"--config.file={both}"])
    image = tmp_path / "image.yaml"  # an image's default file gives way to a URL flag
    image.write_text("persistence: {file: /data/pushgw.db}\n")
    settings = load_settings([f"--config.file={image}", f"--persistence.url={url}"])
    assert (settings.persistence_url, settings.persistence_file) == (url, "")
    with pytest.raises(ConfigError, match="not a postgresql:// URL"):
        load_settings(["--persistence.url=mysql://db/x"])
