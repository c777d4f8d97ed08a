"""Basic auth, bearer tokens, roles and extra headers from the web config, as an ASGI middleware.

It wraps the whole application, as the exporter-toolkit wraps the official's
whole server: every path needs credentials when ``basic_auth_users`` is set,
``/-/healthy`` and ``/-/ready`` included, and every response (401s too) gets
the configured headers.

bcrypt is slow on purpose (~100 ms at cost 10), far too slow to pay on every
push. After the first check of a (user, password) pair its result is kept
under a keyed BLAKE2b digest of the pair and the stored hash: the password
itself is never kept, a random per-process key means the digests are
useless outside this process, and a changed hash misses the cache.

A bearer token (pushgw only) is checked by its SHA-256 digest against every
configured digest with ``hmac.compare_digest``, without stopping at a match,
so the time taken says nothing about which digest, or how much of it, matched.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import posixpath
import secrets

import bcrypt
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pushgw.handler.responses import text_error
from pushgw.web.reload import LiveWebConfig
from pushgw.web.webconfig import WebConfig

PUSH_METHODS = frozenset({"PUT", "POST", "DELETE"})
RIGHTS = {"admin": frozenset({"admin", "push", "read"}),
          "push": frozenset({"push"}),
          "read": frozenset({"read"})}
CACHE_SIZE = 1024  # remembered (user, password, hash) checks; the oldest half goes when full


class PasswordChecker:
    """bcrypt checks with a cache of results, one bcrypt at a time off the event loop."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, bool] = {}
        self._lock = asyncio.Lock()
        self._dummy: bytes | None = None
        self.bcrypt_calls = 0  # for tests and curiosity

    def _digest(self, user: str, password: bytes, hashed: bytes) -> bytes:
        h = hashlib.blake2b(key=self._key, digest_size=32)
        for part in (user.encode("utf-8", "surrogateescape"), password, hashed):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return h.digest()

    async def check(self, user: str, password: bytes) -> bool:
        hashed = self.users.get(user)
        known = hashed is not None
        if hashed is None:
            # Spend the same time on unknown users, so timing does not tell
            # which user names exist (as the toolkit does).
            if self._dummy is None:
                self._dummy = await asyncio.to_thread(_dummy_hash, self.users)
            hashed = self._dummy
        digest = self._digest(user, password, hashed)
        cached = self._cache.get(digest)
        if cached is not None:
            return cached and known
        async with self._lock:  # bcrypt is CPU-bound: one at a time, as the toolkit does
            cached = self._cache.get(digest)
            if cached is None:
                cached = await asyncio.to_thread(_bcrypt_ok, password, hashed)
                self.bcrypt_calls += 1
                self._remember(digest, cached)
        return cached and known

    def _remember(self, digest: bytes, ok: bool) -> None:
        if len(self._cache) >= CACHE_SIZE:
            for old in list(self._cache)[: CACHE_SIZE // 2]:
                del self._cache[old]
        self._cache[digest] = ok


def _dummy_hash(users: dict[str, bytes]) -> bytes:
    """A hash of a random password at the users' highest cost (slow: run it in a thread)."""
    costs = [int(h.split(b"$")[2]) for h in users.values()] or [10]
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(max(costs)))


def _bcrypt_ok(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # e.g. a password over 72 bytes, which Go's bcrypt refuses too
        return False


def basic_credentials(scope: Scope) -> tuple[str, bytes] | None:
    """(user, password) from an ``Authorization: Basic`` header, as Go's r.BasicAuth() reads it."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() != b"basic":
                return None
            try:
                decoded = base64.b64decode(token.strip(), validate=True)
            except (binascii.Error, ValueError):
                return None
            user, colon, password = decoded.partition(b":")
            if not colon:
                return None
            return user.decode("utf-8", "surrogateescape"), password
    return None


def bearer_token(scope: Scope) -> bytes | None:
    """The token of an ``Authorization: Bearer`` header (scheme matched case-insensitively)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


def token_user(tokens: dict[str, bytes], token: bytes) -> str | None:
    """The user whose token digest matches, comparing with every digest in constant time."""
    digest = hashlib.sha256(token).digest()
    found = None
    for user, expected in tokens.items():
        if hmac.compare_digest(digest, expected):
            found = user
    return found


def challenges(config: WebConfig, bad_token: bool) -> list[tuple[bytes, bytes]]:
    """The 401's ``WWW-Authenticate`` headers: one per configured scheme, Basic first.

    Browsers prompt for a password only on a Basic challenge, and take the
    first they understand; API clients see that a bearer token is accepted too.
    """
    headers = []
    if config.users:
        headers.append((b"www-authenticate", b"Basic"))
    if config.tokens:
        bearer = b'Bearer error="invalid_token"' if bad_token else b"Bearer"
        headers.append((b"www-authenticate", bearer))
    return headers


def required_right(method: str, path: str, prefix: str) -> str:
    """The right a request needs: admin (wipe, quit), push (changing the push API) or read."""
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    admin_api = prefix + "/api/v1/admin"
    if cleaned in (prefix + "/-/quit", "/-/quit", admin_api) or cleaned.startswith(admin_api + "/"):
        return "admin"
    if cleaned.startswith(prefix + "/metrics/job") and method in PUSH_METHODS:
        return "push"
    return "read"


def rights_of(roles: frozenset[str] | None) -> frozenset[str]:
    """A user without a role entry has every right, as every user has in the official."""
    if roles is None:
        return RIGHTS["admin"]
    return frozenset().union(*(RIGHTS[r] for r in roles))


class WebConfigMiddleware:
    """Adds the configured headers, then demands credentials and the right role."""

    def __init__(self, app: ASGIApp, live: LiveWebConfig, route_prefix: str) -> None:
        self.app = app
        self.live = live
        self.prefix = route_prefix
        self.checker = PasswordChecker({})
        self.config: WebConfig | None = None
        self.headers: list[tuple[bytes, bytes]] = []

    def _use(self, config: WebConfig) -> None:
        """Take a (re)loaded config; cached checks stay valid, their keys include the hash."""
        self.config = config
        self.checker.users = config.users
        self.checker._dummy = None
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in config.headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = self.live.current()
        if config is not self.config:
            self._use(config)
        if self.headers:
            send = self._adding_headers(send)
        if config.auth_required:
            user = await self._authenticate(scope, config)
            if user is None:
                response = text_error("Unauthorized", 401)
                response.raw_headers += challenges(config, bearer_token(scope) is not None)
                await response(scope, receive, send)
                return
            needed = required_right(scope["method"], scope["path"], self.prefix)
            if needed not in rights_of(config.roles.get(user)):
                roles = ", ".join(sorted(config.roles[user]))
                response = text_error(
                    f"Forbidden: user {user!r} (role {roles}) may not {scope['method']} "
                    f"{scope['path']}: that needs the {needed} role", 403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, config: WebConfig) -> str | None:
        """The user a request's basic credentials or bearer token prove, or None."""
        token = bearer_token(scope) if config.tokens else None
        if token is not None:
            return token_user(config.tokens, token)
        credentials = basic_credentials(scope) if config.users else None
        if credentials is not None and await self.checker.check(*credentials):
            return credentials[0]
        return None

    def _adding_headers(self, send: Send) -> Send:
        """Set the configured headers on the response, unless the handler set them itself."""
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return wrapped
