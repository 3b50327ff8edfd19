"""Refuse request bodies over ``MAX_REQUEST_BYTES`` (default 64 KiB) with 413, before reading them,
and bodies that do not arrive within ``REQUEST_BODY_TIMEOUT_SECONDS`` (default 10 s) with 408.

Every body this API accepts is a small JSON object (a few hundred bytes), so anything larger is a
mistake or an attack; without a limit, FastAPI would read the whole body into memory first. And a
client that declares a body and then sends it slowly, or never (slowloris), would hold a connection
and a task for ever: uvicorn times out idle keep-alive connections, not a request's body.

* A ``Content-Length`` over the limit is answered at once: not one byte of the body is read.
* Any other body is read up to the limit and held (at most ``MAX_REQUEST_BYTES``); if more arrives
  (possible without ``Content-Length``, with ``Transfer-Encoding: chunked``) it is answered with 413,
  if it is not complete by the deadline with 408, otherwise the held messages are handed to the app
  as if they came straight from the client. A request without a body (GET) costs one ``receive``
  that returns at once; later ``receive`` calls (a streaming response waiting for the client to
  disconnect) go straight to the server, without a deadline.

A pure ASGI middleware rather than a ``BaseHTTPMiddleware``, so streaming responses (the status
event stream) pass through untouched.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import send_error


def too_slow_message(seconds: float) -> str:
    return f"The request body did not arrive within {seconds:g} s; send the whole body at once."


def too_large_message(limit: int) -> str:
    return f"The request body is larger than {limit} bytes; send a JSON object like the examples in /docs."


class BodySizeLimitMiddleware:
    """Answers 413 to HTTP requests whose body is over ``max_bytes``, 408 to those too slow to arrive."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_seconds: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():  # uvicorn refuses these already; another server might not
                await send_error(send, 400, "The Content-Length header is not a number.")
                return
            if int(declared) > self.max_bytes:
                await send_error(send, 413, too_large_message(self.max_bytes), _CLOSE)
                return
        try:
            async with asyncio.timeout(self.timeout_seconds):
                held = await self._read_up_to_limit(receive)
        except TimeoutError:
            await send_error(send, 408, too_slow_message(self.timeout_seconds), _CLOSE)
            return
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
