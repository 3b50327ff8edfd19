"""The training actor: a thin shell between a Dramatiq message and :mod:`forecasting.training_job`.

It turns the job's stage reports into Redis statuses, classifies failures once (DATA, CONNECTION,
MODEL, TIMEOUT, INTERNAL), and decides what is worth another attempt.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from functools import lru_cache

import dramatiq
import structlog
from dramatiq.middleware import CurrentMessage, TimeLimitExceeded

import dramatiq_broker
from config import get_settings
from forecasting.errors import ErrorType, ForecastingError, TrainingCancelledError
from forecasting.meter_history import open_meter_history
from forecasting.registry import ModelRegistry
from forecasting.training_job import run_training_job
from service.job_progress import RedisJobProgress, persist
from service.job_status import JobState
from service.job_store import JobStore, connect_redis
from service.meter_lease import MeterLease, wait_for_meter
from service.worker_lifecycle import TrainingWorkerSetup
from service.worker_metrics import JobOutcomeMetrics, WorkerPrometheus

log = structlog.get_logger("task.train_model")
settings = get_settings()

#: Attempts (first delivery, retries and redeliveries after a worker died) before a job is given up.
MAX_ATTEMPTS = settings.training.max_retries + 1
#: How often a job waiting for its meter's lease looks again.
LEASE_POLL_SECONDS = 1.0


@lru_cache(maxsize=1)
def job_store() -> JobStore:
    return JobStore(
        connect_redis(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds),
        ttl_seconds=settings.status_ttl_seconds,
    )


@dramatiq.actor(
    queue_name=settings.worker.queue,
    time_limit=settings.training.time_limit_seconds * 1000,
    max_retries=settings.training.max_retries,
    min_backoff=int(settings.training.retry_min_backoff_seconds * 1000),
    max_backoff=int(settings.training.retry_max_backoff_seconds * 1000),
    # Retries are decided below: only errors that may pass (connection) are re-raised.
    retry_when=lambda retries, error: isinstance(error, ForecastingError) and error.retryable,
)
def train_model(meter_id: str, meter_type: str) -> None:
    """Train one meter's model; the message id is the task id users poll."""
    message = CurrentMessage.get_current_message()
    task_id = message.message_id if message else "unknown"
    structlog.contextvars.bind_contextvars(task_id=task_id, meter_id=meter_id, meter_type=meter_type)
    try:
        _run(task_id, meter_id, meter_type)
    finally:
        structlog.contextvars.clear_contextvars()


def _run(task_id: str, meter_id: str, meter_type: str) -> None:
    store = job_store()
    status = persist(lambda: store.get(task_id))  # Redis may have gone away right after the fetch
    if status is None or status.finished:
        log.info("job_skipped", reason="unknown, expired or finished", status=status and status.status)
        return
    lease = MeterLease(
        store.redis,
        store.keys.meter_lease(meter_type, meter_id),
        owner=f"{task_id} pid {os.getpid()} {secrets.token_hex(4)}",
        ttl_seconds=settings.worker.heartbeat_timeout_seconds,
    )
    try:
        if not wait_for_meter(store, lease, task_id, poll_seconds=LEASE_POLL_SECONDS):
            return
        with lease.kept():
            _train(store, task_id, meter_id, meter_type)
    except TimeLimitExceeded:
        limit = settings.training.time_limit_seconds
        persist(
            lambda: store.fail(task_id, ErrorType.TIMEOUT, f"Training exceeded its time limit of {limit} s.")
        )
        log.error("job_timed_out", time_limit_seconds=limit)


def _train(store: JobStore, task_id: str, meter_id: str, meter_type: str) -> None:
    started = store.update(task_id, JobState.STARTED, message="Worker started the task")
    attempt = started.attempt if started else 1
    structlog.contextvars.bind_contextvars(attempt=attempt)
    if attempt > MAX_ATTEMPTS:
        store.fail(
            task_id,
            ErrorType.INTERNAL,
            f"Gave up after {MAX_ATTEMPTS} attempts: the worker stopped during each one.",
        )
        log.error("job_abandoned", attempts=attempt - 1)
        return
    log.info("Starting model training task")
    registry = ModelRegistry(settings.models_dir)
    try:
        result = run_training_job(
            meter_id,
            meter_type,
            open_history=lambda: open_meter_history(settings.influxdb),
            registry=registry,
            settings=settings,
            progress=RedisJobProgress(store, task_id, datetime.now(UTC)),
            job_id=task_id,
        )
    except TrainingCancelledError:
        log.info("job_cancelled")
        return
    except ForecastingError as error:
        error_type, reason = error.error_type, str(error)
        if error.retryable and attempt < MAX_ATTEMPTS:
            retrying = f"{reason} Retrying (attempt {attempt + 1} of {MAX_ATTEMPTS})."
            persist(lambda: store.update(task_id, JobState.RETRYING, message=retrying))
            log.warning("job_retrying", error_type=error_type, error=reason)
            raise
        persist(lambda: store.fail(task_id, error_type, reason))
        log.warning("job_failed", error_type=error_type, error=reason)
        return
    except Exception:
        log.exception("job_crashed")
        persist(
            lambda: store.fail(
                task_id,
                ErrorType.INTERNAL,
                f"Internal error while training; the worker log has the details (task_id={task_id}).",
            )
        )
        return
    persist(lambda: store.succeed(task_id, result, result["message"]))
    log.info("job_succeeded", model_version=result["details"]["model_version"])


dramatiq_broker.broker.add_middleware(TrainingWorkerSetup(settings, job_store))
dramatiq_broker.broker.add_middleware(JobOutcomeMetrics(job_store, actor_name=train_model.actor_name))
dramatiq_broker.broker.add_middleware(WorkerPrometheus())
