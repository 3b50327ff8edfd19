"""Run the real API and worker processes against the test session's Redis and InfluxDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.service_processes import find_free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stack_environment(
    *, redis_url: str, influx_url: str, database: str, workdir: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment for service processes: private stores, tiny training budget, files under workdir."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("INFLUXDB", "TRAINING__"))}
    env.update(
        {
            "REDIS_URL": redis_url,
            "INFLUXDB_CONFIG_FILE": str(workdir / "no-influx-config.json"),
            "INFLUXDB__URL": influx_url,
            "INFLUXDB__DATABASE": database,
            "MODELS_DIR": str(workdir / "models"),
            "LOG_DIR": str(workdir / "logs"),
            "TRAINING__MAX_TRIALS": "1",
            "TRAINING__EPOCHS": "4",
            "TRAINING__MAX_TRAIN_DAYS": "90",
            "TRAINING__BACKTEST_WEEKS": "2",
            "WORKER__HEARTBEAT_TIMEOUT_SECONDS": "5",
            "WORKER__METRICS_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


@dataclass
class ServiceProcess:
    """One API or worker process with its output in a file (read on failure)."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def output(self, tail: int = 60) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])


class Stack:
    """API (uvicorn) and worker (dramatiq_worker.py) processes, started from the project's entry points."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.port = find_free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api = ServiceProcess(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "main_dramatiq:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env,
            workdir / "api.out",
        )
        self.worker = ServiceProcess(
            "worker", [sys.executable, "dramatiq_worker.py"], env, workdir / "worker.out"
        )
        # The first /forecast/ imports TensorFlow and loads the model: seconds, more on a loaded machine.
        self.client = httpx.Client(base_url=self.base_url, timeout=60)

    def start(self) -> None:
        self.worker.start()
        self.api.start()
        wait_for(self._api_answers, timeout=30, what="the API to answer")
        wait_for(
            lambda: self.client.get("/health/worker").status_code == 200,
            timeout=90,
            interval=0.3,
            what="a live worker",
        )

    def _api_answers(self) -> bool:
        try:
            return self.client.get("/health/").status_code in (200, 503)
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.client.close()
        self.api.stop()
        self.worker.stop()

    def poll_until_finished(self, task_id: str, *, timeout: float = 240) -> list[dict[str, Any]]:
        """Every distinct status seen while polling, ending with the finished one."""
        seen: list[dict[str, Any]] = []

        def finished() -> bool:
            body = self.client.get(f"/trainmodel/status/{task_id}").json()
            if not seen or (body["status"], body["progress"]) != (seen[-1]["status"], seen[-1]["progress"]):
                seen.append(body)
            return body["status"] in ("SUCCESS", "FAILED", "CANCELLED")

        try:
            wait_for(finished, timeout=timeout, interval=0.05, what=f"task {task_id} to finish")
        except AssertionError as error:
            raise AssertionError(
                f"{error}; statuses: {seen}\nworker output:\n{self.worker.output()}"
            ) from None
        return seen
