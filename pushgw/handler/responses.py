"""Plain-text responses shaped like Go's ``http.Error``, which official clients see."""

from __future__ import annotations

from starlette.responses import Response

TEXT = "text/plain; charset=utf-8"


def text_error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """An error body ending in a newline, with ``nosniff``, as the official sends it."""
    all_headers = {"X-Content-Type-Options": "nosniff", **(headers or {})}
    return Response(message + "\n", status_code=status, media_type=TEXT, headers=all_headers)


def text(message: str, status: int = 200) -> Response:
    return Response(message, status_code=status, media_type=TEXT)


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(b"", status_code=status, headers=headers)


def not_found() -> Response:
    return text_error("404 page not found", 404)


def method_not_allowed(allow: str) -> Response:
    return text_error("Method Not Allowed", 405, {"Allow": allow})
