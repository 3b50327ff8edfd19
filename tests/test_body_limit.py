"""The body limit answers 413 without reading more than the limit, and replays bodies within it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from api.body_limit import BodySizeLimitMiddleware

LIMIT = 1024


class EchoApp:
    """Reads the whole body and answers 200 with its length."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _call(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes, int]:
    """(status, body, messages received from the client) for one request through the middleware."""
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if received > len(chunks):
            raise AssertionError("read past the end of the body")
        return {"type": "http.request", "body": chunks[received - 1], "more_body": received < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/trainmodel/", "headers": headers}
    asyncio.run(BodySizeLimitMiddleware(EchoApp(), max_bytes=LIMIT)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), received


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    status, body, received = _call([(b"content-length", b"100000000")], [b"x" * 10] * 1000)

    assert status == 413 and received == 0
    assert json.loads(body)["message"].startswith(f"The request body is larger than {LIMIT} bytes")


def test_a_chunked_body_over_the_limit_is_read_only_up_to_it() -> None:
    status, _, received = _call([(b"transfer-encoding", b"chunked")], [b"x" * 100] * 1000)

    assert status == 413 and received == LIMIT // 100 + 1


def test_bodies_within_the_limit_reach_the_app_whole() -> None:
    chunked = _call([(b"transfer-encoding", b"chunked")], [b"x" * 100] * 10 + [b"y" * 24])
    declared = _call([(b"content-length", str(LIMIT).encode())], [b"x" * LIMIT])
    no_body = _call([], [b""])

    assert chunked[:2] == (200, str(LIMIT).encode())
    assert declared[:2] == (200, str(LIMIT).encode())
    assert no_body[:2] == (200, b"0")
