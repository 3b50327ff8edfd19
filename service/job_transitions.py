"""How a training job's status may change, as pure functions of the previous status.

Kept apart from the Redis code so the synchronous (worker) and asyncio (API) job stores apply exactly
the same rules, and so the rules can be tested without a server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.job_status import FINISHED_STATES, STAGE_PROGRESS, JobError, JobState, JobStatus

PENDING_MESSAGE = "Task queued for processing"
CANCELLED_MESSAGE = "Task cancelled by request"
_NOT_YET_RUNNING = frozenset({JobState.PENDING, JobState.STARTED})


def pending_status(task_id: str, meter_id: str, meter_type: str, *, now: datetime) -> JobStatus:
    """The status of a job that was just queued."""
    return JobStatus(
        task_id=task_id,
        meter_id=meter_id,
        meter_type=meter_type,
        status=JobState.PENDING,
        progress=0,
        message=PENDING_MESSAGE,
        updated_at=now,
    )


def progressed_status(
    previous: JobStatus,
    state: JobState,
    *,
    message: str,
    now: datetime,
    progress: int | None = None,
    attempt: int | None = None,
    estimated_completion: datetime | None = None,
) -> JobStatus | None:
    """The status after a worker reports ``state``, or None if the report must be ignored.

    Ignored: reports after the job finished and reports from an older delivery than the one shown.
    Progress never falls within an attempt. A new attempt starts when ``attempt`` rises or when a
    job that had got past STARTED (or was RETRYING) reports STARTED again, as a redelivered message
    does; it then counts from its own stage progress and the attempt number goes up by one.
    """
    if state in FINISHED_STATES:
        raise ValueError(f"{state} finishes a job; use succeed(), fail() or cancel()")
    if previous.finished or (attempt is not None and attempt < previous.attempt):
        return None
    restarting = (attempt is not None and attempt > previous.attempt) or (
        state is JobState.STARTED and previous.status not in _NOT_YET_RUNNING
    )
    if progress is None:
        progress = STAGE_PROGRESS.get(state, 0 if restarting else previous.progress)
    progress = min(max(progress, 0), 99)  # 100 means SUCCESS
    return previous.model_copy(
        update={
            "status": state,
            "progress": progress if restarting else max(previous.progress, progress),
            "message": message,
            "attempt": max(attempt or 0, previous.attempt + 1) if restarting else previous.attempt,
            "started_at": previous.started_at or (None if state is JobState.PENDING else now),
            "updated_at": now,
            "estimated_completion": estimated_completion
            or (None if restarting else previous.estimated_completion),
        }
    )


def finished_status(
    previous: JobStatus,
    state: JobState,
    *,
    message: str,
    now: datetime,
    result: dict[str, Any] | None = None,
    error: JobError | None = None,
) -> JobStatus | None:
    """The final status, or None when the job had already finished (a final status never changes)."""
    if state not in FINISHED_STATES:
        raise ValueError(f"{state} is not a final state")
    if previous.finished:
        return None
    return previous.model_copy(
        update={
            "status": state,
            "progress": 100 if state is JobState.SUCCESS else previous.progress,
            "message": message,
            "updated_at": now,
            "estimated_completion": None,
            "result": result,
            "error": error,
        }
    )
