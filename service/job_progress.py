"""Job progress written to Redis from inside a training run, surviving Redis outages.

Training does not need Redis, so an outage only loses progress reports; the statuses a job cannot do
without (its final state) wait for Redis to come back, bounded, through :func:`persist`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog

from forecasting.errors import TrainingCancelledError
from forecasting.training_job import JobProgress, Stage
from service.job_status import STAGE_PROGRESS, TRAINING_PROGRESS_MAX, JobState
from service.job_store import JobStore, StoreUnavailableError

log = structlog.get_logger("task.train_model")
T = TypeVar("T")

#: How long a finished job waits for Redis to come back to record its outcome before giving up.
FINAL_WRITE_PATIENCE_SECONDS = 600.0


class RedisJobProgress(JobProgress):
    """Writes stage and training progress to the job's status; stops the job when it is cancelled.

    Training does not need Redis, so a Redis outage only loses progress reports (logged once per
    outage); the job keeps going and its final status waits for Redis (:func:`persist`).
    """

    def __init__(self, store: JobStore, task_id: str, started: datetime) -> None:
        self._store, self._task_id, self._started = store, task_id, started
        self._store_down = False

    def stage(self, stage: Stage, message: str) -> None:
        self._check_cancelled()
        self._report(lambda: self._store.update(self._task_id, JobState(stage.value), message=message))
        log.info("stage_started", stage=stage.value)

    def training(self, fraction: float, message: str) -> None:
        self._check_cancelled()
        low, high = STAGE_PROGRESS[JobState.TRAINING_MODEL], TRAINING_PROGRESS_MAX
        progress = int(low + (high - low) * fraction)
        elapsed = datetime.now(UTC) - self._started
        estimate = None
        if fraction > 0.05:
            estimate = self._started + timedelta(seconds=elapsed.total_seconds() / fraction * 1.1)
        self._report(
            lambda: self._store.update(
                self._task_id,
                JobState.TRAINING_MODEL,
                message=message,
                progress=progress,
                estimated_completion=estimate,
            )
        )

    def _check_cancelled(self) -> None:
        cancelled = self._report(lambda: self._store.is_cancel_requested(self._task_id))
        if cancelled:
            raise TrainingCancelledError("Task cancelled by request")

    def _report(self, call: Callable[[], T]) -> T | None:
        try:
            value = call()
        except StoreUnavailableError as error:
            if not self._store_down:
                log.warning("progress_not_recorded", error=str(error))
            self._store_down = True
            return None
        if self._store_down:
            log.info("progress_recorded_again")
        self._store_down = False
        return value


def persist(write: Callable[[], T]) -> T:
    """Run a store call the job cannot do without, waiting out a Redis outage (bounded).

    A job that trained for minutes and then found Redis restarting would otherwise stay in
    TRAINING_MODEL forever.
    """
    deadline = time.monotonic() + FINAL_WRITE_PATIENCE_SECONDS
    delay = 0.2
    while True:
        try:
            return write()
        except StoreUnavailableError as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("status_write_waiting_for_redis", error=str(error), retry_in_seconds=delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
