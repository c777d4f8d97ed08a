"""Sending one push over HTTP, with retries that stay within a deadline.

Only the stdlib (http.client, ssl only for https). A push is retried on
connection errors, timeouts, 408, 429 and 5xx, with exponential backoff and
jitter (each wait is between half and all of ``base * 2**attempt``, capped);
a ``Retry-After`` on 429/503 is honoured when it fits before the deadline,
otherwise the push gives up at once instead of sleeping for nothing. Other
4xx are refusals: the push was understood and will never be accepted as it is.

Every attempt's socket timeout is the smaller of ``--timeout`` and the time
left, so a gateway that never answers costs at most the deadline. (A server
that trickles one byte per timeout could stretch one attempt; no gateway does.)
"""

from __future__ import annotations

import base64
import http.client
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pushgw

TTL_HEADER = "Pushgateway-TTL"
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_MESSAGE = 2000  # bytes of a refusal's body shown to the user

Say = Callable[[str], None]


class Push:
    """One request to a group: what the spool keeps and the client sends.

    ``gateway`` is the base URL (no trailing ``/``), ``path`` the group's path
    below it; together they identify the group. ``families`` are the names
    of the families in ``body`` (the spool's replacement rule needs them).
    ``created`` is the wall-clock time the push was made (default: now).

    (Plain classes in this package, not dataclasses: importing dataclasses
    costs more start-up time than all of ``pushgw exec`` itself.)
    """

    __slots__ = ("method", "gateway", "path", "body", "ttl", "families", "created")

    def __init__(self, method: str, gateway: str, path: str, body: bytes = b"",
                 ttl: str | None = None, families: tuple[str, ...] = (),
                 created: float | None = None) -> None:
        self.method = method
        self.gateway = gateway
        self.path = path
        self.body = body
        self.ttl = ttl
        self.families = families
        self.created = time.time() if created is None else created

    @property
    def url(self) -> str:
        return self.gateway + self.path

    def describe(self) -> str:
        return f"{self.method} {self.url}"


class Outcome:
    """What one push came to: ``ok``, ``refused`` (a 4xx) or ``failed`` (worth retrying later)."""

    __slots__ = ("kind", "status", "message", "retry_after")

    def __init__(self, kind: str, status: int | None = None, message: str = "",
                 retry_after: float | None = None) -> None:
        self.kind = kind
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


class Transport:
    """How to reach the gateway: credentials, TLS, compression, per-attempt timeout.

    ``authorization`` is the Authorization header's value, if any.
    """

    def __init__(self, timeout: float = 10.0, gzip: bool = False, authorization: str | None = None,
                 ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        self.timeout = timeout
        self.gzip = gzip
        self.authorization = authorization
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self._ssl_context = None

    @staticmethod
    def basic_auth(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")

    def connection(self, url: str, timeout: float) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                               context=self.tls_context())
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def tls_context(self):
        """The client's TLS settings; OSError (ssl.SSLError) for unusable files."""
        if self._ssl_context is None:
            import ssl  # only for https: it costs start-up time

            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
            self._ssl_context = context
        return self._ssl_context

    def send_once(self, push: Push, timeout: float) -> Outcome:
        """One attempt; never raises for network trouble."""
        headers = {"User-Agent": f"pushgw/{pushgw.__version__}"}
        body = push.body if push.method != "DELETE" else None
        if body is not None:
            headers["Content-Type"] = TEXT_CONTENT_TYPE
            if self.gzip:
                import gzip

                body = gzip.compress(body, mtime=0)
                headers["Content-Encoding"] = "gzip"
        if push.ttl is not None:
            headers[TTL_HEADER] = push.ttl
        if self.authorization:
            headers["Authorization"] = self.authorization
        conn = self.connection(push.gateway, timeout)
        try:
            target = urlsplit(push.gateway).path + push.path
            conn.request(push.method, target, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read(MAX_MESSAGE).decode("utf-8", "replace").strip()
            return _outcome(response.status, response.reason, text, response.getheader("Retry-After"))
        except TimeoutError:
            return Outcome("failed", message=f"no answer within {timeout:.3g}s")
        except (OSError, http.client.HTTPException) as err:
            return Outcome("failed", message=str(err) or type(err).__name__)
        finally:
            conn.close()


def _outcome(status: int, reason: str, text: str, retry_after: str | None) -> Outcome:
    message = f"{status} {reason}" + (f": {text}" if text else "")
    if 200 <= status < 300:
        return Outcome("ok", status, message)
    if status in (408, 429) or status >= 500:
        return Outcome("failed", status, message, _retry_after(retry_after))
    return Outcome("refused", status, message)


def _retry_after(header: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    from email.utils import parsedate_to_datetime  # already loaded by http.client

    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Retries:
    """How long to keep trying: at most ``retries`` more attempts, and never past ``deadline``.

    ``deadline`` is a ``time.monotonic()`` value shared by everything one
    command sends (spooled pushes and its own), so the whole costs at most
    ``--retry-max-time``.
    """

    def __init__(self, deadline: float, retries: int = 5, base_delay: float = 0.5,
                 max_delay: float = 8.0) -> None:
        self.deadline = deadline
        self.retries = retries
        self.base_delay = base_delay
        self.max_delay = max_delay

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def backoff(self, attempt: int) -> float:
        """Exponential, with jitter between half and all of the step."""
        step = min(self.max_delay, self.base_delay * 2**attempt)
        return step * (0.5 + 0.5 * random.random())


def send(push: Push, transport: Transport, retries: Retries, say: Say | None = None) -> Outcome:
    """Send ``push``, retrying as the module docstring says; the last outcome."""
    attempt = 0
    while True:
        left = retries.remaining()
        if left <= 0:
            return Outcome("failed", message="no time left to try (--retry-max-time)")
        outcome = transport.send_once(push, min(transport.timeout, left))
        if outcome.kind != "failed" or attempt >= retries.retries:
            return outcome
        wait = retries.backoff(attempt)
        if outcome.retry_after is not None:
            wait = max(wait, outcome.retry_after)
        if wait >= retries.remaining():
            outcome.message += " (no retry: the next attempt would start after --retry-max-time)"
            return outcome
        if say:
            say(f"{push.describe()}: {outcome.message}; retrying in {wait:.2f}s")
        time.sleep(wait)
        attempt += 1


def read_secret(path: str) -> str:
    """A password or token from a file, without its trailing newline."""
    with open(path, encoding="utf-8") as f:
        return f.read().rstrip("\r\n")
