"""What each training worker process does at boot, at shutdown and between jobs.

Importing TensorFlow costs seconds and hundreds of MB, so it happens at boot, not in the first job.
A long-lived process that builds many Keras models grows a few MB per job, so after
``max_jobs_per_process`` jobs the process asks its Dramatiq parent to stop gracefully and
``dramatiq_worker.py`` starts a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable

import dramatiq
import structlog
from dramatiq.middleware import Middleware
from dramatiq.worker import WorkerThread

from config import Settings
from service.job_store import JobStore, StoreUnavailableError
from service.worker_health import register_worker, unregister_worker

log = structlog.get_logger("task.train_model")


class TrainingWorkerSetup(Middleware):
    """Per worker process: configure logging and TensorFlow once, recycle after N jobs."""

    def __init__(self, settings: Settings, job_store: Callable[[], JobStore]) -> None:
        self._settings, self._job_store = settings, job_store
        self._jobs = 0
        self._recycling = False
        self._lock = threading.Lock()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Before the worker threads start: a first job importing TensorFlow while this import is
        # still running dies of an import deadlock.
        from logger_config import configure_logging

        configure_logging(self._settings, process_name="worker")
        from forecasting.training import configure_tensorflow, remove_orphaned_tuner_dirs

        configure_tensorflow(self._settings.worker.tensorflow_threads)
        if removed := remove_orphaned_tuner_dirs():
            log.info("orphaned_tuner_dirs_removed", count=removed)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        register_worker(self._job_store().redis, broker.broker_id, f"pid {os.getpid()}")
        log.info("worker_ready", pid=os.getpid())

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with contextlib.suppress(StoreUnavailableError):
            unregister_worker(self._job_store().redis, broker.broker_id)

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
            recycle = self._jobs >= self._settings.worker.max_jobs_per_process and not self._recycling
            self._recycling = self._recycling or recycle
        if recycle:
            log.info("worker_recycling", jobs=self._jobs)
            # This thread takes no further message: one fetched meanwhile is requeued at shutdown
            # instead of being started, and cut short by a second signal, in a process about to exit.
            current = threading.current_thread()
            if isinstance(current, WorkerThread):
                current.pause()
            os.kill(os.getppid(), signal.SIGTERM)
