"""Run the training workers: ``python dramatiq_worker.py``.

Starts ``WORKER__PROCESSES`` independent Dramatiq workers (one process, ``WORKER__THREADS`` threads
each) and restarts any that exits. Independent workers matter because Dramatiq's own CLI stops all
its processes when one exits, and each worker process deliberately exits after
``WORKER__MAX_JOBS_PER_PROCESS`` jobs to give back the memory TensorFlow accumulates.
``DEBUG=true`` adds Dramatiq's ``--watch`` so code changes reload the workers.
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

log = structlog.get_logger("worker.supervisor")
PROJECT_DIR = Path(__file__).resolve().parent
RESTART_BACKOFF_MAX_SECONDS = 30.0


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
    if settings.debug:
        command += ["--watch", str(PROJECT_DIR)]
    return command


class Supervisor:
    """Keeps N Dramatiq workers running until told to stop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._command = dramatiq_command(settings)
        self._workers: list[subprocess.Popen[bytes] | None] = [None] * settings.worker.processes
        self._failures = [0] * settings.worker.processes
        self._stopping = False

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._stop)
        log.info("workers_starting", processes=len(self._workers), threads=self._settings.worker.threads)
        while not self._stopping:
            for slot, worker in enumerate(self._workers):
                if worker is None or worker.poll() is not None:
                    self._restart(slot, worker)
            time.sleep(0.5)
        return self._shutdown()

    def _restart(self, slot: int, previous: subprocess.Popen[bytes] | None) -> None:
        if previous is not None:
            code = previous.returncode
            self._failures[slot] = 0 if code == 0 else self._failures[slot] + 1
            log.info("worker_exited", slot=slot, pid=previous.pid, returncode=code)
            if self._failures[slot]:
                time.sleep(min(RESTART_BACKOFF_MAX_SECONDS, 2.0 ** self._failures[slot]))
                if self._stopping:
                    return
        worker = subprocess.Popen(self._command, cwd=PROJECT_DIR)
        self._workers[slot] = worker
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
        return 0


def main() -> int:
    settings = get_settings()
    configure_logging(settings, process_name="worker-supervisor")
    return Supervisor(settings).run()


if __name__ == "__main__":
    sys.exit(main())
