"""Run the training workers: ``python dramatiq_worker.py``.

Starts ``WORKER__PROCESSES`` independent Dramatiq workers (one process, ``WORKER__THREADS`` threads
each) and restarts any that exits. Independent workers matter because Dramatiq's own CLI stops all
its processes when one exits, and each worker process deliberately exits after
``WORKER__MAX_JOBS_PER_PROCESS`` jobs to give back the memory TensorFlow accumulates.
``DEBUG=true`` restarts the workers when the project's source changes. Not through Dramatiq's
``--watch DIR``: it takes one directory, and the one holding all the source also holds ``.venv/``,
``run/``, ``logs/`` and ``models/`` (see :mod:`service.source_watch`); and its SIGHUP reload
re-executes the interpreter under the bare name ``python``, which then finds its installation
through PATH, so a venv's worker dies with "No module named dramatiq". The supervisor
watches just the source, stops each worker as SIGTERM does (current messages finish or are
requeued) and starts it again at once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import structlog

from config import Settings, get_settings
from logger_config import configure_logging
from service.source_watch import SourceWatcher
from service.worker_metrics import WorkerMetricsExporter

log = structlog.get_logger("worker.supervisor")
PROJECT_DIR = Path(__file__).resolve().parent
RESTART_BACKOFF_MAX_SECONDS = 30.0
#: A worker that ran this long before it died was not crash-looping: restart it without delay.
HEALTHY_RUN_SECONDS = 60.0
#: Training jobs are long: a busy worker must not take a second message that an idle worker could
#: start at once (Dramatiq's default prefetches two per thread). Heartbeats still flow while busy,
#: because the delay-queue consumer keeps polling Redis.
QUEUE_PREFETCH = "1"


def dramatiq_command(settings: Settings) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "dramatiq",
        "dramatiq_broker",
        "task_system",
        "--processes",
        "1",
        "--threads",
        str(settings.worker.threads),
        "--queues",
        settings.worker.queue,
    ]
    return command


class Supervisor:
    """Keeps N Dramatiq workers running until told to stop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._command = dramatiq_command(settings)
        self._workers: list[subprocess.Popen[bytes] | None] = [None] * settings.worker.processes
        self._failures = [0] * settings.worker.processes
        self._started_at = [0.0] * settings.worker.processes
        self._stopping = False
        self._metrics = WorkerMetricsExporter(settings.worker.metrics_host, settings.worker.metrics_port)
        self._source = SourceWatcher(PROJECT_DIR) if settings.debug else None
        self._reloading: set[int] = set()  # slots stopped for new code: restart without backoff

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._stop)
        log.info("workers_starting", processes=len(self._workers), threads=self._settings.worker.threads)
        self._metrics.start()
        if self._source is not None:
            self._source.start()
            log.info("watching_source", directories=[str(path) for path in self._source.directories])
        while not self._stopping:
            for slot, worker in enumerate(self._workers):
                if worker is None or worker.poll() is not None:
                    self._restart(slot, worker)
            if self._source is not None and (changed := self._source.changes()):
                self.reload(changed)
            time.sleep(0.5)
        return self._shutdown()

    def reload(self, changed: list[str]) -> None:
        """Stop every running worker gracefully; the loop starts each again, with the new code."""
        log.info("source_changed", files=changed[:10], workers=len(self._workers))
        for slot, worker in enumerate(self._workers):
            if worker is not None and worker.poll() is None:
                self._reloading.add(slot)
                worker.send_signal(signal.SIGTERM)

    def _restart(self, slot: int, previous: subprocess.Popen[bytes] | None) -> None:
        if previous is not None:
            code = previous.returncode
            ran_seconds = time.monotonic() - self._started_at[slot]
            healthy = code == 0 or ran_seconds >= HEALTHY_RUN_SECONDS or slot in self._reloading
            self._reloading.discard(slot)
            self._failures[slot] = 0 if healthy else self._failures[slot] + 1
            log.info(
                "worker_exited", slot=slot, pid=previous.pid, returncode=code, ran_seconds=round(ran_seconds)
            )
            if self._failures[slot]:  # 0.5 s, 1 s, 2 s ... while it keeps dying young
                time.sleep(min(RESTART_BACKOFF_MAX_SECONDS, 0.5 * 2.0 ** (self._failures[slot] - 1)))
                if self._stopping:
                    return
        env = self._metrics.child_environment()
        env.setdefault("dramatiq_queue_prefetch", QUEUE_PREFETCH)
        worker = subprocess.Popen(self._command, cwd=PROJECT_DIR, env=env)
        self._workers[slot] = worker
        self._started_at[slot] = time.monotonic()
        log.info("worker_started", slot=slot, pid=worker.pid)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _shutdown(self) -> int:
        log.info("workers_stopping")
        running = [worker for worker in self._workers if worker and worker.poll() is None]
        for worker in running:
            worker.send_signal(signal.SIGTERM)
        for worker in running:
            try:
                worker.wait(timeout=self._settings.training.time_limit_seconds + 30)
            except subprocess.TimeoutExpired:
                worker.kill()
        self._metrics.close()
        if self._source is not None:
            self._source.stop()
        return 0


def main() -> int:
    settings = get_settings()
    configure_logging(settings, process_name="worker-supervisor")
    return Supervisor(settings).run()


if __name__ == "__main__":
    sys.exit(main())
