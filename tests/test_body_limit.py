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


def test_a_body_that_stops_arriving_gets_408_at_the_deadline() -> None:
    sent: list[dict[str, Any]] = []
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b'{"meter_id": ', "more_body": True}
        await asyncio.Event().wait()  # the client never sends the rest
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/trainmodel/",
        "headers": [(b"content-length", b"1000")],
    }
    middleware = BodySizeLimitMiddleware(EchoApp(), max_bytes=LIMIT, timeout_seconds=0.2)
    asyncio.run(asyncio.wait_for(middleware(scope, receive, send), timeout=5))

    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert "did not arrive within 0.2 s" in json.loads(sent[1]["body"])["message"]


def test_receive_after_the_body_has_no_deadline() -> None:
    """A streaming response waits on receive() for the client to disconnect, for minutes."""
    messages = [{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}]
    seen: list[str] = []

    async def receive() -> dict[str, Any]:
        message = messages.pop(0)
        if message["type"] == "http.disconnect":
            await asyncio.sleep(0.5)  # longer than the body deadline below
        return message

    class WaitsForDisconnect:
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.append((await receive())["type"])
            seen.append((await receive())["type"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": "/events", "headers": []}
    asyncio.run(
        BodySizeLimitMiddleware(WaitsForDisconnect(), max_bytes=LIMIT, timeout_seconds=0.1)(
            scope, receive, send
        )
    )

    assert seen == ["http.request", "http.disconnect"]
