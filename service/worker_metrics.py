"""What the training workers report to Prometheus, and how one host serves it from one port.

Two kinds of numbers come out of a worker:

* Job outcomes (SUCCESS/FAILED by error type, duration, seconds per stage) go to Redis through
  :class:`JobOutcomeMetrics`, so the API's ``/metrics`` shows the whole fleet (see
  :mod:`service.job_metrics`).
* Dramatiq's own message metrics (messages processed, errors, retries, in progress, durations) come
  from Dramatiq's Prometheus middleware in multiprocess mode. Dramatiq serves them from a fork of its
  CLI on a fixed port, which breaks with ``dramatiq_worker.py``: it runs N independent Dramatiq CLIs
  (they would all bind the same port) and restarts them after each recycle. So
  :class:`WorkerPrometheus` drops that fork and :class:`WorkerMetricsExporter`, owned by the
  supervisor, serves every worker process's metrics from one directory and one port for the host's
  whole lifetime.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware
from dramatiq.middleware.prometheus import Prometheus

from service.job_metrics import record_finished_job
from service.job_status import JobState
from service.job_store import JobStore, StoreUnavailableError

log = structlog.get_logger("worker.metrics")

#: Environment variables that put prometheus_client (and Dramatiq's middleware) in multiprocess mode.
MULTIPROCESS_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "dramatiq_prom_db")
_COUNTED_STATES = (JobState.SUCCESS, JobState.FAILED)  # CANCELLED is counted by the API that cancels


class JobOutcomeMetrics(Middleware):
    """Counts each job this worker brings to SUCCESS or FAILED in the fleet metrics in Redis.

    Only messages of ``actor_name`` are looked at (two status reads per job). A job already finished
    when its message arrives (a redelivery, a cancelled job) is not counted again. Metrics never fail
    a job: a Redis error here is logged and dropped.
    """

    def __init__(self, store: Callable[[], JobStore], *, actor_name: str) -> None:
        self._store, self._actor_name = store, actor_name
        self._running: dict[str, tuple[float, bool]] = {}  # message id → (start, finished before)
        self._lock = threading.Lock()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message[Any]) -> None:
        if message.actor_name != self._actor_name:
            return
        try:
            status = self._store().get(message.message_id)
        except StoreUnavailableError:
            return
        with self._lock:
            self._running[message.message_id] = (time.monotonic(), status is not None and status.finished)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message[Any],
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            started = self._running.pop(message.message_id, None)
        if started is None or started[1]:
            return
        seconds = time.monotonic() - started[0]
        store = self._store()
        try:
            status = store.get(message.message_id)
            if status is None or status.status not in _COUNTED_STATES:
                return
            details = (status.result or {}).get("details") or {}
            record_finished_job(
                store.redis,
                status.status.value,
                error_type=status.error.type if status.error else "",
                seconds=seconds,
                stage_seconds=details.get("stage_seconds"),
            )
        except StoreUnavailableError as error:
            log.warning("job_metrics_not_recorded", task_id=message.message_id, error=str(error))

    after_skip_message = after_process_message


class WorkerPrometheus(Prometheus):
    """Dramatiq's Prometheus middleware without its exposition fork (the supervisor serves instead).

    Dramatiq sets the middleware up on ``process_boot``, which fires right after the broker module is
    imported and before the actor modules are: a middleware added by ``task_system`` misses it. It
    is set up on ``worker_boot`` instead, still before any worker thread takes a message.
    """

    @property
    def forks(self) -> list[Callable[[], int]]:
        return []

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        """Not yet: see the class docstring."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        super().after_process_boot(broker)


class WorkerMetricsExporter:
    """Serves the Prometheus metrics of every worker process of this host on ``host:port``.

    Worker processes write their metrics as files into a private directory (prometheus_client's
    multiprocess mode, switched on by :meth:`child_environment`); this server merges them at scrape
    time. A fresh directory per supervisor run means no stale files from an earlier run.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.directory = Path(tempfile.mkdtemp(prefix="ef-worker-metrics-"))
        self._server: Any = None

    def child_environment(self) -> dict[str, str]:
        """The environment for worker processes: this process's plus the metrics directory."""
        return {**os.environ, **dict.fromkeys(MULTIPROCESS_ENV, str(self.directory))}

    def start(self) -> None:
        """Listen unless the port is 0; a port in use is logged, never fatal to the workers."""
        if not self.port:
            return
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.directory))
        try:
            self._server, _thread = start_http_server(self.port, addr=self.host, registry=registry)
        except OSError as error:
            log.warning("worker_metrics_unavailable", host=self.host, port=self.port, error=str(error))
            return
        log.info("worker_metrics_listening", host=self.host, port=self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.directory)
