"""``GET /trainmodel/status/{task_id}/events``: a job's status changes as Server-Sent Events.

For clients that would rather not poll. Every status the job store writes is also appended to the
job's Redis stream (:meth:`service.job_store.AsyncJobStore.events`); this route replays the stream
from the start (or from ``Last-Event-ID`` after a reconnect) and then follows it with blocking reads,
ending after SUCCESS, FAILED or CANCELLED. A plain ``StreamingResponse`` is all SSE needs here, so no
SSE library is added.

Blocking reads last less than the Redis socket timeout (a longer one would look like an outage);
between them, a comment line keeps proxies from closing an idle stream and lets Starlette notice a
client that went away.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, status
from fastapi.responses import StreamingResponse

from api import dependencies
from api.training_routes import TaskId
from config import get_settings
from service.job_status import JobStatus
from service.job_store import AsyncJobStore, StoreUnavailableError

log = structlog.get_logger("api.events")
router = APIRouter(tags=["training"])

#: Wait per blocking read, as a share of the Redis socket timeout.
BLOCK_SHARE_OF_TIMEOUT = 0.5
KEEPALIVE = b": keep-alive\n\n"
#: Redis stream entry ids, which are the events' ids: milliseconds, optionally "-" and a sequence.
EVENT_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")


def is_event_id(text: str) -> bool:
    """Whether ``text`` can be a Redis stream id: ``<ms>[-<seq>]``, each part at most 2**64 - 1."""
    return EVENT_ID.fullmatch(text) is not None and all(int(part) < 2**64 for part in text.split("-"))


def block_ms() -> int:
    return max(1, int(get_settings().redis_timeout_seconds * 1000 * BLOCK_SHARE_OF_TIMEOUT))


def format_event(entry_id: str, job: JobStatus, event: str = "status") -> bytes:
    """One SSE event; the data is the same JSON ``GET /trainmodel/status/{task_id}`` returns."""
    return f"id: {entry_id}\nevent: {event}\ndata: {job.model_dump_json()}\n\n".encode()


async def status_events(
    store: AsyncJobStore, task_id: str, last_id: str, wait_ms: int
) -> AsyncIterator[bytes]:
    """Stream events after ``last_id`` until the job finishes (or its status expires)."""
    try:
        while True:
            events = await store.events(task_id, last_id, block_ms=wait_ms)
            for entry_id, job in events:
                yield format_event(entry_id, job)
                last_id = entry_id
                if job.finished:
                    return
            if events:
                continue
            # Quiet. The final status is written to the stream in the same transaction as the status
            # itself, and trimming keeps the newest entries, so a finished job with nothing after
            # ``last_id`` means the client already has its last event: close without repeating it.
            current = await store.get(task_id)
            if current is None or current.finished:
                return
            yield KEEPALIVE
    except StoreUnavailableError as error:
        log.warning("status_events_interrupted", task_id=task_id, error=str(error))
        yield b'event: error\ndata: {"detail": "Redis is unavailable; reconnect to resume."}\n\n'


@router.get(
    "/trainmodel/status/{task_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "One `status` event per change"}},
)
async def training_status_events(
    task_id: TaskId,
    store: Annotated[AsyncJobStore, Depends(dependencies.async_job_store)],
    last_event_id: Annotated[
        str | None, Header(description="Resume after this event id, e.g. 1733280000000-0")
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events: each status change of a job (state and progress), ending when it finishes.

    Each event's ``data`` is the status JSON of ``GET /trainmodel/status/{task_id}``. The stream starts
    with the job's history, so nothing is missed; a reconnecting client sends ``Last-Event-ID`` to
    resume after the last event it saw.
    """
    if last_event_id is not None and not is_event_id(last_event_id):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "Last-Event-ID must be the id of an event this stream sent (like '1733280000000-0'); "
            "leave the header out to get the job's whole history.",
        )
    if await store.get(task_id) is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"No training task with id '{task_id}': it never existed or its status has expired.",
        )
    return StreamingResponse(
        status_events(store, task_id, last_event_id or "0", block_ms()),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
