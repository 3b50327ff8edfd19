"""DEBUG=true: worker and API processes pick up a source change, and nothing else makes them restart.

The processes are the real ones (``dramatiq_worker.py``; uvicorn under ``service.source_watch``, as
``make up`` starts it). A source change is simulated by touching a module of the project (its
modification time only); a ``.py`` file written under ``logs/`` stands for everything that is not
source (``.venv/``, ``run/``, ``logs/``, ``models/``).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.job_store import connect_redis
from service.worker_health import read_worker_health
from tests.integration.stack import PROJECT_DIR, ServiceProcess, stack_environment, wait_for
from tests.service_processes import InfluxServer, RedisServer, find_free_port


@pytest.fixture(scope="module")
def debug_env(
    influxdb_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    workdir = tmp_path_factory.mktemp("debug-reload")
    with RedisServer() as private_redis:
        yield stack_environment(
            redis_url=private_redis.url,
            influx_url=influxdb_server.url,
            database=f"debug_{uuid.uuid4().hex[:8]}",
            workdir=workdir,
            extra={"DEBUG": "true"},
        )


def _write_outside_the_source() -> None:
    probe = PROJECT_DIR / "logs" / f"reload-probe-{uuid.uuid4().hex}.py"
    probe.write_text("not = 'source'\n")
    try:
        time.sleep(2.0)  # several of the watcher's quiet periods and the supervisor's polls
    finally:
        probe.unlink()


def test_debug_workers_reload_on_a_source_change_only(debug_env: dict[str, str]) -> None:
    workdir = Path(debug_env["LOG_DIR"]).parent
    worker = ServiceProcess(
        "worker", [sys.executable, "dramatiq_worker.py"], debug_env, workdir / "worker.out"
    )
    redis = connect_redis(debug_env["REDIS_URL"], timeout_seconds=2)

    def boots() -> int:
        return worker.log_path.read_text(errors="replace").count("is booting up")

    def live() -> bool:
        return read_worker_health(redis).live_workers == 1

    worker.start()
    try:
        wait_for(live, timeout=120, interval=0.3, what="a live worker")
        _write_outside_the_source()
        assert boots() == 1 and "source_changed" not in worker.output(tail=400), worker.output()

        os.utime(PROJECT_DIR / "service" / "__init__.py")

        wait_for(lambda: boots() == 2, timeout=60, interval=0.3, what="the worker to start again")
        output = worker.output(tail=400)
        assert "source_changed" in output and "service/__init__.py" in output, output
        assert "returncode=0" in output.split("source_changed")[1], "a clean stop, not a crash"
        wait_for(live, timeout=120, interval=0.3, what="the restarted worker's heartbeat")
    finally:
        worker.stop()
        redis.close()


def test_debug_api_restarts_on_a_source_change_only(debug_env: dict[str, str]) -> None:
    workdir = Path(debug_env["LOG_DIR"]).parent
    port = find_free_port()
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "main_dramatiq:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    api = ServiceProcess(
        "api", [sys.executable, "-m", "service.source_watch", "--", *uvicorn], debug_env, workdir / "api.out"
    )

    def starts() -> int:
        return api.log_path.read_text(errors="replace").count("Started server process")

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health/", timeout=5).status_code in (200, 503)
        except httpx.TransportError:
            return False

    api.start()
    try:
        wait_for(answers, timeout=30, what="the API to answer")
        _write_outside_the_source()
        assert starts() == 1, api.output()

        os.utime(PROJECT_DIR / "main_dramatiq.py")  # a top-level module, not only the packages

        wait_for(lambda: starts() == 2, timeout=30, interval=0.2, what="the API to restart")
        wait_for(answers, timeout=30, what="the restarted API to answer")
        assert "main_dramatiq.py changed" in api.output()
    finally:
        api.stop()
