"""The training actor: a thin shell between a Dramatiq message and :mod:`forecasting.training_job`.

It turns the job's stage reports into Redis statuses, classifies failures once (DATA, CONNECTION,
MODEL, TIMEOUT, INTERNAL), and decides what is worth another attempt.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TypeVar

import dramatiq
import structlog
from dramatiq.middleware import CurrentMessage, Middleware, TimeLimitExceeded
from dramatiq.worker import WorkerThread

import dramatiq_broker
from config import get_settings
from forecasting.errors import ErrorType, ForecastingError, TrainingCancelledError
from forecasting.meter_history import open_meter_history
from forecasting.registry import ModelRegistry
from forecasting.training_job import JobProgress, Stage, run_training_job
from service.job_status import STAGE_PROGRESS, TRAINING_PROGRESS_MAX, JobState
from service.job_store import JobStore, StoreUnavailableError, connect_redis
from service.meter_lease import MeterLease
from service.worker_health import register_worker, unregister_worker
from service.worker_metrics import JobOutcomeMetrics, WorkerPrometheus

log = structlog.get_logger("task.train_model")
settings = get_settings()

#: Attempts (first delivery, retries and redeliveries after a worker died) before a job is given up.
MAX_ATTEMPTS = settings.training.max_retries + 1
#: How often a job waiting for its meter's lease looks again.
LEASE_POLL_SECONDS = 1.0
#: How long a finished job waits for Redis to come back to record its outcome before giving up.
FINAL_WRITE_PATIENCE_SECONDS = 600.0
T = TypeVar("T")


@lru_cache(maxsize=1)
def job_store() -> JobStore:
    return JobStore(
        connect_redis(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds),
        ttl_seconds=settings.status_ttl_seconds,
    )


class RedisJobProgress(JobProgress):
    """Writes stage and training progress to the job's status; stops the job when it is cancelled.

    Training does not need Redis, so a Redis outage only loses progress reports (logged once per
    outage); the job keeps going and its final status waits for Redis (:func:`_persist`).
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


def _persist(write: Callable[[], T]) -> T:
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
    status = _persist(lambda: store.get(task_id))  # Redis may have gone away right after the fetch
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
        if not _wait_for_meter(store, lease, task_id):
            return
        with lease.kept():
            _train(store, task_id, meter_id, meter_type)
    except TimeLimitExceeded:
        limit = settings.training.time_limit_seconds
        _persist(
            lambda: store.fail(task_id, ErrorType.TIMEOUT, f"Training exceeded its time limit of {limit} s.")
        )
        log.error("job_timed_out", time_limit_seconds=limit)


def _wait_for_meter(store: JobStore, lease: MeterLease, task_id: str) -> bool:
    """Take the meter's lease, waiting while another run trains the meter; False if the job ended meanwhile.

    The wait counts against the job's time limit, which bounds it.
    """
    waiting = False
    while not lease.try_acquire():
        status = store.get(task_id)
        if status is None or status.finished:
            log.info(
                "job_skipped", reason="finished while waiting for its meter", status=status and status.status
            )
            return False
        if not waiting:
            log.info("meter_busy", holder=lease.holder())
            if status.status is JobState.PENDING:
                store.update(
                    task_id, JobState.PENDING, message="Waiting for another run on this meter to stop"
                )
            waiting = True
        time.sleep(LEASE_POLL_SECONDS)
    status = store.get(task_id)  # it may have been cancelled (or finished by another delivery) meanwhile
    if status is None or status.finished:
        lease.release()
        log.info(
            "job_skipped", reason="finished while waiting for its meter", status=status and status.status
        )
        return False
    return True


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
            _persist(lambda: store.update(task_id, JobState.RETRYING, message=retrying))
            log.warning("job_retrying", error_type=error_type, error=reason)
            raise
        _persist(lambda: store.fail(task_id, error_type, reason))
        log.warning("job_failed", error_type=error_type, error=reason)
        return
    except Exception:
        log.exception("job_crashed")
        _persist(
            lambda: store.fail(
                task_id,
                ErrorType.INTERNAL,
                f"Internal error while training; the worker log has the details (task_id={task_id}).",
            )
        )
        return
    _persist(lambda: store.succeed(task_id, result, result["message"]))
    log.info("job_succeeded", model_version=result["details"]["model_version"])


class TrainingWorkerSetup(Middleware):
    """Per worker process: configure logging and TensorFlow once, recycle after N jobs.

    Importing TensorFlow costs seconds and hundreds of MB, so it happens at boot, not in the first
    job. A long-lived process that builds many Keras models grows a few MB per job, so after
    ``max_jobs_per_process`` jobs the process asks its Dramatiq parent to stop gracefully and
    ``dramatiq_worker.py`` starts a fresh one.
    """

    def __init__(self) -> None:
        self._jobs = 0
        self._recycling = False
        self._lock = threading.Lock()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Before the worker threads start: a first job importing TensorFlow while this import is
        # still running dies of an import deadlock.
        from logger_config import configure_logging

        configure_logging(settings, process_name="worker")
        from forecasting.training import configure_tensorflow, remove_orphaned_tuner_dirs

        configure_tensorflow(settings.worker.tf_threads)
        if removed := remove_orphaned_tuner_dirs():
            log.info("orphaned_tuner_dirs_removed", count=removed)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        register_worker(job_store().redis, broker.broker_id, f"pid {os.getpid()}")
        log.info("worker_ready", pid=os.getpid())

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with contextlib.suppress(StoreUnavailableError):
            unregister_worker(job_store().redis, broker.broker_id)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            self._jobs += 1
            recycle = self._jobs >= settings.worker.max_jobs_per_process and not self._recycling
            self._recycling = self._recycling or recycle
        if recycle:
            log.info("worker_recycling", jobs=self._jobs)
            # This thread takes no further message: one fetched meanwhile is requeued at shutdown
            # instead of being started, and cut short by a second signal, in a process about to exit.
            current = threading.current_thread()
            if isinstance(current, WorkerThread):
                current.pause()
            os.kill(os.getppid(), signal.SIGTERM)


dramatiq_broker.broker.add_middleware(TrainingWorkerSetup())
dramatiq_broker.broker.add_middleware(JobOutcomeMetrics(job_store, actor_name=train_model.actor_name))
dramatiq_broker.broker.add_middleware(WorkerPrometheus())
