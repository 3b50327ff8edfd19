"""Optional API key: when ``API_KEY`` is set, every request except ``/health`` needs it.

A middleware rather than a route dependency, so routes added later (metrics, event streams, docs)
are protected by default instead of by remembering. ``/health`` and ``/health/*`` stay open for load
balancers and orchestrators; ``/docs`` and ``/openapi.json`` are protected like everything else.
The key is accepted as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``, compared in
constant time, and never logged or echoed.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import send_error

OPEN_PATHS = ("/health",)
UNAUTHORIZED = "Missing or invalid API key: send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'."


def supplied_key(headers: Headers) -> str | None:
    """The key a request carries, from ``X-API-Key`` or a Bearer ``Authorization`` header."""
    if key := headers.get("x-api-key"):
        return key
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def key_matches(supplied: str | None, expected: SecretStr) -> bool:
    if supplied is None:
        return False
    return hmac.compare_digest(supplied.encode(), expected.get_secret_value().encode())


def is_open_path(path: str) -> bool:
    """``/health`` and below, and nothing that only looks like it (``/healthz``, ``/health/../models``)."""
    if ".." in path.split("/"):
        return False
    return any(path == prefix or path.startswith(prefix + "/") for prefix in OPEN_PATHS)


class ApiKeyMiddleware:
    """Answers 401 to HTTP requests without the right key; a no-op when ``api_key`` is None."""

    def __init__(self, app: ASGIApp, api_key: SecretStr | None) -> None:
        self.app = app
        self._api_key = api_key if api_key is not None and api_key.get_secret_value() else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self._api_key is None
            or scope["type"] != "http"
            or is_open_path(scope["path"])
            or key_matches(supplied_key(Headers(scope=scope)), self._api_key)
        ):
            await self.app(scope, receive, send)
            return
        await send_error(
            send, 401, UNAUTHORIZED, headers=[(b"www-authenticate", b'Bearer realm="energy-forecasting"')]
        )
