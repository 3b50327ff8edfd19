"""Queue training jobs, report their status, cancel them."""

from __future__ import annotations

import contextlib
import re
from typing import Annotated

import redis
import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Response, status

import dramatiq_broker
from api import dependencies
from api.metrics import JOBS_DEDUPLICATED, JOBS_QUEUED
from api.schemas import TaskAccepted, TrainRequest
from api.training_queue import training_message
from config import Settings
from service.job_metrics import record_finished_job
from service.job_status import JobStatus
from service.job_store import (
    AsyncJobStore,
    JobAlreadyFinishedError,
    JobNotFoundError,
    JobStore,
    StoreUnavailableError,
)

log = structlog.get_logger("api.training")
router = APIRouter(tags=["training"])

#: Task ids are Dramatiq message ids: UUID4 strings.
TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
NOT_A_TASK_ID = (
    "No training task with this id: task ids are the UUIDs that POST /trainmodel/ returns, "
    "like '3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d'."
)


async def _task_id(
    task_id: Annotated[
        str,
        Path(
            description="Id returned by POST /trainmodel/", examples=["3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"]
        ),
    ],
) -> str:
    """The path's task id, or 404 if it cannot be one this API issued.

    The answer does not repeat a malformed id: it may be 10,000 characters long or hold control
    characters meant for a terminal or a log viewer. async: FastAPI runs a plain-def dependency in
    its threadpool, a thread hop per request for a regex match.
    """
    if not TASK_ID.fullmatch(task_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_A_TASK_ID)
    return task_id.lower()


TaskId = Annotated[str, Depends(_task_id)]
ALREADY_QUEUED = "A training job for this meter is already queued or running; returning that job"


@router.post(
    "/trainmodel/",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": TaskAccepted, "description": "A job for this meter is already active"}},
)
async def start_training(
    request: TrainRequest,
    response: Response,
    store: Annotated[AsyncJobStore, Depends(dependencies.async_job_store)],
    settings: Annotated[Settings, Depends(dependencies.settings)],
) -> TaskAccepted:
    """Queue training of one meter's model. Poll the URL in the ``Location`` header for progress.

    A second request for a meter whose job is still queued or running returns that job (200).
    """
    message = training_message(request.meter_id, request.meter_type, queue=settings.worker.queue)
    job, created = await store.create_pending(message.message_id, request.meter_id, request.meter_type)
    response.headers["Location"] = f"/trainmodel/status/{job.task_id}"
    if not created:
        JOBS_DEDUPLICATED.inc()
        response.status_code = status.HTTP_200_OK
        return TaskAccepted(
            task_id=job.task_id, status=job.status, progress=job.progress, message=ALREADY_QUEUED
        )
    try:
        # Dramatiq's broker is synchronous. The call takes ~0.2 ms and is bounded by the Redis socket
        # timeouts, while a threadpool hop costs ~0.5 ms per request, so it runs on the event loop.
        dramatiq_broker.broker.enqueue(message)
    except redis.RedisError as error:
        log.warning("enqueue_failed", task_id=job.task_id, error=type(error).__name__)
        with contextlib.suppress(StoreUnavailableError):
            await store.fail(job.task_id, "CONNECTION", "The job could not be queued: Redis is unavailable.")
        raise StoreUnavailableError("Redis is unavailable: the job was not queued") from error
    JOBS_QUEUED.inc()
    # Debug level: uvicorn's access log already has a line per request, and the hot path pays per line.
    log.debug(
        "training_queued", task_id=job.task_id, meter_id=request.meter_id, meter_type=request.meter_type
    )
    return TaskAccepted(task_id=job.task_id, status=job.status, progress=job.progress, message=job.message)


@router.get("/trainmodel/status/{task_id}", response_model=JobStatus)
async def training_status(
    task_id: TaskId, store: Annotated[AsyncJobStore, Depends(dependencies.async_job_store)]
) -> Response:
    """Current state, progress and, when finished, the result or the classified error of a job."""
    body = await store.get_json(task_id)
    if body is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"No training task with id '{task_id}': it never existed or its status has expired.",
        )
    # The stored JSON is JobStatus.model_dump_json(): the response model's own serialisation.
    return Response(content=body, media_type="application/json")


@router.delete("/trainmodel/{task_id}")
def cancel_training(
    task_id: TaskId, store: Annotated[JobStore, Depends(dependencies.job_store)]
) -> JobStatus:
    """Cancel a queued or running job. A running job stops at its next epoch or trial."""
    try:
        cancelled = store.cancel(task_id)
    except JobNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No training task with id '{task_id}'.") from None
    except JobAlreadyFinishedError as error:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"Task '{task_id}' already finished with status {error.status.status}."
        ) from None
    with contextlib.suppress(StoreUnavailableError):  # the job is cancelled; a lost count is no error
        record_finished_job(store.redis, cancelled.status.value)
    return cancelled
