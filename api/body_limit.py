"""Refuse request bodies over ``MAX_REQUEST_BYTES`` (default 64 KiB) with 413, before reading them.

Every body this API accepts is a small JSON object (a few hundred bytes), so anything larger is a
mistake or an attack; without a limit, FastAPI would read the whole body into memory first.

* A ``Content-Length`` over the limit is answered at once: not one byte of the body is read.
* A body without ``Content-Length`` (``Transfer-Encoding: chunked``) is read up to the limit and
  held (at most ``MAX_REQUEST_BYTES``); if more arrives it is answered with 413, otherwise the held
  chunks are handed to the app as if they came straight from the client. A request without a body
  (GET) costs one ``receive`` that returns at once.

A pure ASGI middleware rather than a ``BaseHTTPMiddleware``, so streaming responses (the status
event stream) pass through untouched.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import send_error


def too_large_message(limit: int) -> str:
    return f"The request body is larger than {limit} bytes; send a JSON object like the examples in /docs."


class BodySizeLimitMiddleware:
    """Answers 413 to HTTP requests whose body is over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():  # uvicorn refuses these already; another server might not
                await send_error(send, 400, "The Content-Length header is not a number.")
            elif int(declared) > self.max_bytes:
                await send_error(send, 413, too_large_message(self.max_bytes), _CLOSE)
            else:  # the server stops the body at Content-Length: nothing to count
                await self.app(scope, receive, send)
            return
        held = await self._read_up_to_limit(receive)
        if held is None:
            await send_error(send, 413, too_large_message(self.max_bytes), _CLOSE)
            return
        await self.app(scope, _replay(held, receive), send)

    async def _read_up_to_limit(self, receive: Receive) -> list[Message] | None:
        """The body's messages, or None as soon as they pass the limit (the rest is never read)."""
        held: list[Message] = []
        size = 0
        while True:
            message = await receive()
            held.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see it
                return held
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return held


#: After a 413 the rest of the body is unread, so the connection cannot carry another request.
_CLOSE = [(b"connection", b"close")]


def _replay(held: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that returns the held messages first, then whatever the client sends next."""
    pending = list(held)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
