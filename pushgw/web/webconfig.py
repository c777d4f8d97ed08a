"""``--web.config.file``: the exporter-toolkit web configuration, as the official reads it.

The format (docs/web-configuration.md of prometheus/exporter-toolkit) is

    tls_server_config: {cert_file, key_file, cert, key, client_auth_type,
                        client_ca_file, client_ca, min_version, max_version,
                        prefer_server_cipher_suites}
    http_server_config: {headers: {...}, http2: bool}
    basic_auth_users: {user: bcrypt hash}

plus pushgw's own top-level section (ignored by nothing else, since the
official refuses unknown keys, so a file using it is pushgw-only):

    pushgw_bearer_tokens: {user: hex SHA-256 digest of the token}
    pushgw_authorization: {user: role or [roles]}   # push, read, admin

A bearer token is kept only as its digest (``printf %s "$TOKEN" | sha256sum``):
tokens are long random secrets, so an unsalted fast hash is enough to make a
leaked file useless, and it is cheap enough to check on every push.

The whole file is checked at start-up, certificates included, so a mistake
stops pushgw with a message instead of surfacing on the first request. Keys
the toolkit knows but pushgw cannot honour (cipher_suites, curve_preferences,
client_allowed_sans, rate_limit, RequireAnyClientCert) are refused, never
silently ignored: each would weaken what the operator asked for.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from collections.abc import Collection
from typing import Any

import yaml

from pushgw.config import ConfigError

ROLES = ("push", "read", "admin")

# The only headers the toolkit lets a file set, with their allowed values
# (None: any value); anything else is a start-up error, as in the toolkit.
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# client_auth_type -> how the TLS server treats client certificates.
# RequestClientCert asks for a certificate but neither requires nor verifies
# it; pushgw never looks at an unverified certificate, so not asking at all
# admits and refuses exactly the same clients.
CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNVERIFIED_REQUIRED = ("RequireAnyClientCert", "RequireClientCert")

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "pushgw_bearer_tokens",
             "pushgw_authorization")
_TLS_KEYS = ("cert_file", "key_file", "cert", "key", "client_auth_type", "client_ca_file",
             "client_ca", "min_version", "max_version", "prefer_server_cipher_suites")
_HTTP_KEYS = ("headers", "http2")
_NOT_SUPPORTED = {
    "rate_limit": "rate limiting is not supported by pushgw; put a proxy in front of it",
    "tls_server_config.cipher_suites":
        "choosing cipher suites is not supported by pushgw (Python's TLS uses OpenSSL's "
        "secure defaults); remove the key",
    "tls_server_config.curve_preferences":
        "choosing curves is not supported by pushgw (OpenSSL's defaults apply); remove the key",
    "tls_server_config.client_allowed_sans":
        "client_allowed_sans is not supported by pushgw; use a client CA that issues only "
        "the allowed certificates",
}
# Go's bcrypt.Cost accepts what this matches: "$2", an optional minor
# version letter, a two-digit cost and the 53 characters of salt and hash.
_BCRYPT = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class WebConfigError(ConfigError):
    """The web config file cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class TLSSettings:
    """What ``tls_server_config`` asks for, with file paths resolved."""

    cert_file: str = ""
    key_file: str = ""
    cert: str = ""  # inline PEM instead of cert_file
    key: str = ""  # inline PEM instead of key_file
    client_auth_type: str = "NoClientCert"
    client_ca_file: str = ""
    client_ca: str = ""  # inline PEM instead of client_ca_file
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    prefer_server_cipher_suites: bool = True


@dataclass(frozen=True)
class WebConfig:
    """The parsed web config file."""

    path: str
    tls: TLSSettings | None = None
    headers: dict[str, str] = field(default_factory=dict)
    http2: bool = True  # accepted; pushgw speaks HTTP/1.1, which clients fall back to
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    tokens: dict[str, bytes] = field(default_factory=dict)  # user -> SHA-256 digest of the bearer token
    roles: dict[str, frozenset[str]] = field(default_factory=dict)  # user -> roles

    @property
    def auth_required(self) -> bool:
        """Basic auth users or bearer tokens are configured: every request needs one."""
        return bool(self.users or self.tokens)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, as Go's yaml.UnmarshalStrict does."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_web_config(path: str) -> WebConfig:
    """Read and check the file, including the certificates it names; raises WebConfigError."""
    def fail(message: str) -> WebConfigError:
        return WebConfigError(f'web config file "{path}": {message}')

    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.load(f, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as err:
        raise WebConfigError(f'cannot read web config file "{path}": {err.strerror}') from None
    except UnicodeDecodeError as err:
        raise fail(f"not UTF-8 text: {err}") from None
    except yaml.YAMLError as err:
        raise fail(f"not valid YAML: {err}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise fail("the top level must be a mapping")
    _check_keys(document, _TOP_KEYS, "", fail)
    base = os.path.dirname(os.path.abspath(path))
    tls = _tls(_section(document, "tls_server_config", fail), base, fail)
    http = _section(document, "http_server_config", fail)
    _check_keys(http, _HTTP_KEYS, "http_server_config.", fail)
    http2 = http.get("http2", True)
    if not isinstance(http2, bool):
        raise fail(f"http_server_config.http2: expected true or false, got {http2!r}")
    headers = _headers(http.get("headers"), fail)
    users = _users(document.get("basic_auth_users"), fail)
    tokens = _tokens(document.get("pushgw_bearer_tokens"), fail)
    roles = _roles(document.get("pushgw_authorization"), users.keys() | tokens.keys(), fail)
    config = WebConfig(path, tls, headers, http2, users, tokens, roles)
    if tls is not None:
        from pushgw.web.tls import build_ssl_context  # loads the certificates: checks them now

        build_ssl_context(config)
    return config


def _section(document: dict[str, Any], name: str, fail) -> dict[str, Any]:
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"{name} must be a mapping, got {value!r}")
    return value


def _check_keys(section: dict[str, Any], known: tuple[str, ...], where: str, fail) -> None:
    for key in section:
        name = f"{where}{key}"
        if name in _NOT_SUPPORTED:
            raise fail(f"{name}: {_NOT_SUPPORTED[name]}")
        if key not in known:
            raise fail(f'unknown key "{name}" (known here: {", ".join(known)})')


def _string(section: dict[str, Any], key: str, where: str, fail) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise fail(f"{where}{key}: expected a string, got {value!r}")
    return value


def _tls(section: dict[str, Any], base: str, fail) -> TLSSettings | None:
    """``tls_server_config``, or None when it sets nothing (plain HTTP, as in the toolkit)."""
    where = "tls_server_config."
    _check_keys(section, _TLS_KEYS, where, fail)
    text = {key: _string(section, key, where, fail)
            for key in _TLS_KEYS if key not in ("prefer_server_cipher_suites",)}
    enabling = ("cert_file", "key_file", "cert", "key", "client_ca_file", "client_ca", "client_auth_type")
    if not any(text[key] for key in enabling):
        return None
    for inline, file_key in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if text[inline] and text[file_key]:
            raise fail(f"{where}{inline} and {where}{file_key} are both set; set only one")
    if not text["cert_file"] and not text["cert"]:
        raise fail(f"{where}: missing one of cert or cert_file")
    if not text["key_file"] and not text["key"]:
        raise fail(f"{where}: missing one of key or key_file")
    auth = text["client_auth_type"]
    if auth in UNVERIFIED_REQUIRED:
        raise fail(
            f"{where}client_auth_type {auth} (require a client certificate without verifying it) "
            "is not supported: Python's TLS verifies every certificate it requires. Use "
            "RequireAndVerifyClientCert with client_ca_file")
    if auth not in CLIENT_AUTH:
        raise fail(f"{where}client_auth_type: invalid ClientAuth {auth!r} (valid: NoClientCert, "
                   "RequestClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)")
    if (text["client_ca_file"] or text["client_ca"]) and CLIENT_AUTH[auth] == ssl.CERT_NONE \
            and auth != "RequestClientCert":
        raise fail(f"{where}: client CA's have been configured without a Client Auth Policy "
                   "(set client_auth_type, e.g. RequireAndVerifyClientCert)")
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = text[key] or default
        if name not in TLS_VERSIONS:
            raise fail(f"{where}{key}: unknown TLS version {name!r} (valid: {', '.join(TLS_VERSIONS)})")
        versions[key] = TLS_VERSIONS[name]
    if versions["min_version"] > versions["max_version"]:
        raise fail(f"{where}: min_version {text['min_version']} is above max_version {text['max_version']}")
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise fail(f"{where}prefer_server_cipher_suites: expected true or false, got {prefer!r}")

    def resolve(name: str) -> str:  # relative paths are relative to the file, as in the toolkit
        return os.path.join(base, name) if name and not os.path.isabs(name) else name

    return TLSSettings(
        cert_file=resolve(text["cert_file"]), key_file=resolve(text["key_file"]),
        cert=text["cert"], key=text["key"], client_auth_type=auth or "NoClientCert",
        client_ca_file=resolve(text["client_ca_file"]), client_ca=text["client_ca"],
        min_version=versions["min_version"], max_version=versions["max_version"],
        prefer_server_cipher_suites=prefer,
    )


def _headers(value: Any, fail) -> dict[str, str]:
    where = "http_server_config.headers"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"{where} must be a mapping of header names to values")
    headers = {}
    for name, text in value.items():
        if name not in ALLOWED_HEADERS:
            raise fail(f"{where}: HTTP header {name!r} can not be configured "
                       f"(allowed: {', '.join(ALLOWED_HEADERS)})")
        if not isinstance(text, str):
            raise fail(f"{where}.{name}: expected a string, got {text!r}")
        allowed = ALLOWED_HEADERS[name]
        if allowed is not None and text not in allowed:
            raise fail(f"{where}: invalid value for {name}. Expected one of: {list(allowed)}, "
                       f"but got: {text!r}")
        if any(c in text for c in "\r\n\0"):
            raise fail(f"{where}.{name}: the value must be a single line")
        if text:  # the toolkit leaves a blank header unset
            headers[name] = text
    return headers


def _users(value: Any, fail) -> dict[str, bytes]:
    where = "basic_auth_users"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"{where} must be a mapping of user names to bcrypt hashes")
    users = {}
    for user, hashed in value.items():
        if not isinstance(user, str):
            raise fail(f"{where}: user name {user!r} must be a string")
        if not isinstance(hashed, str):
            raise fail(f"{where}.{user}: expected a bcrypt hash string, got {hashed!r}")
        match = _BCRYPT.fullmatch(hashed)
        if match is None:
            raise fail(f"{where}.{user}: not a bcrypt hash (want e.g. $2y$10$ followed by 53 "
                       "characters, as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints)")
        if not 4 <= int(match.group(1)) <= 31:
            raise fail(f"{where}.{user}: bcrypt cost {int(match.group(1))} is outside 4..31")
        users[user] = hashed.encode("ascii")
    return users


def _tokens(value: Any, fail) -> dict[str, bytes]:
    """``pushgw_bearer_tokens``: user -> the 32-byte SHA-256 digest of that user's token."""
    where = "pushgw_bearer_tokens"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"{where} must be a mapping of user names to SHA-256 digests of their tokens")
    tokens: dict[str, bytes] = {}
    owners: dict[bytes, str] = {}
    for user, digest in value.items():
        if not isinstance(user, str) or not user:
            raise fail(f"{where}: user name {user!r} must be a non-empty string")
        if not isinstance(digest, str) or _SHA256_HEX.fullmatch(digest) is None:
            raise fail(f"{where}.{user}: not a SHA-256 digest (want the 64 hex digits that "
                       "`printf %s \"$TOKEN\" | sha256sum` prints, not the token itself)")
        raw = bytes.fromhex(digest)
        if raw in owners:  # one token, two users: which role would apply?
            raise fail(f"{where}: users {owners[raw]!r} and {user!r} have the same token digest")
        owners[raw] = user
        tokens[user] = raw
    return tokens


def _roles(value: Any, users: Collection[str], fail) -> dict[str, frozenset[str]]:
    where = "pushgw_authorization"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"{where} must be a mapping of user names to roles ({', '.join(ROLES)})")
    if not users:
        raise fail(f"{where} needs basic_auth_users or pushgw_bearer_tokens: roles apply to "
                   "authenticated users")
    roles = {}
    for user, given in value.items():
        if user not in users:
            raise fail(f"{where}: user {user!r} is in neither basic_auth_users nor pushgw_bearer_tokens")
        names = [given] if isinstance(given, str) else given
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise fail(f"{where}.{user}: expected a role or a non-empty list of roles "
                       f"({', '.join(ROLES)}), got {given!r}")
        for name in names:
            if name not in ROLES:
                raise fail(f"{where}.{user}: unknown role {name!r} (valid: {', '.join(ROLES)})")
        roles[user] = frozenset(names)
    return roles
