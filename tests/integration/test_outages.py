"""Redis and InfluxDB go away for real (the server processes are stopped or frozen) and come back.

This module runs its own Redis (with an fsync'ed append-only file, as production should, so queued
jobs survive a restart) and its own influxd, so the session's servers are never disturbed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.faults_support import (
    FreezableInfluxServer,
    PersistentRedisServer,
    fault_stack,
    status,
    status_history,
    submit,
    wait_for_status,
)
from tests.integration.stack import Stack, wait_for

MAX_ATTEMPTS = 3  # TRAINING__MAX_RETRIES=2
MIN_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS = 1.0, 2.0
QUICK_ANSWER_SECONDS = 3.0
OUTAGE_SECONDS = 6.0  # > WORKER__HEARTBEAT_TIMEOUT_SECONDS
INFLUX_PASSWORD = "pw-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PersistentRedisServer, FreezableInfluxServer]]:
    with PersistentRedisServer() as redis_server, FreezableInfluxServer() as influx_server:
        yield redis_server, influx_server


@pytest.fixture(scope="module")
def stack(
    servers: tuple[PersistentRedisServer, FreezableInfluxServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redis_server, influx_server = servers
    with fault_stack(
        redis_server=redis_server,
        influx_server=influx_server,
        workdir=tmp_path_factory.mktemp("outages"),
        meters=("outage_a", "outage_b", "outage_c"),
        extra={
            "TRAINING__MAX_RETRIES": str(MAX_ATTEMPTS - 1),
            "TRAINING__RETRY_MIN_BACKOFF_SECONDS": str(MIN_BACKOFF_SECONDS),
            "TRAINING__RETRY_MAX_BACKOFF_SECONDS": str(MAX_BACKOFF_SECONDS),
            "INFLUXDB__TIMEOUT_SECONDS": "1",
            # Ignored by the test influxd (no auth); they must never show up in a message or a log.
            "INFLUXDB__USERNAME": "forecaster",
            "INFLUXDB__PASSWORD": INFLUX_PASSWORD,
        },
    ) as running:
        yield running


def _timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    reply = call()
    return reply, time.monotonic() - started


def _attempt_starts(history: list[dict[str, Any]]) -> dict[int, datetime]:
    """When each attempt first reported anything (its STARTED)."""
    starts: dict[int, datetime] = {}
    for entry in history:
        starts.setdefault(entry["attempt"], datetime.fromisoformat(entry["updated_at"]))
    return starts


def test_redis_down_answers_503_quickly_then_everything_recovers_without_restarts(
    stack: Stack, servers: tuple[PersistentRedisServer, FreezableInfluxServer]
) -> None:
    redis_server, _ = servers
    running = submit(stack, "outage_a")
    wait_for_status(stack, running, "TRAINING_MODEL")
    queued = submit(stack, "outage_b")
    assert status(stack, queued)["status"] == "PENDING"

    redis_server.stop()
    try:
        post, post_seconds = _timed(
            lambda: stack.client.post(
                "/trainmodel/", json={"meter_id": "outage_c", "meter_type": "electricity"}
            )
        )
        get, get_seconds = _timed(lambda: stack.client.get(f"/trainmodel/status/{running}"))
        health, _ = _timed(lambda: stack.client.get("/health/"))
        workers = stack.client.get("/health/worker")
        # A deliberate outage length: longer than the worker heartbeat timeout, so on its return
        # Redis holds only stale heartbeats and the worker must really reconnect to count as live.
        time.sleep(OUTAGE_SECONDS)
    finally:
        redis_server.start()
    restarted = time.monotonic()

    for reply, seconds in ((post, post_seconds), (get, get_seconds)):
        assert reply.status_code == 503, reply.text
        assert seconds < QUICK_ANSWER_SECONDS
        assert "Redis is unavailable" in reply.json()["detail"]
        assert "Traceback" not in reply.text
    assert health.status_code == 503
    assert health.json()["dependencies"]["redis"]["status"] == "down"
    assert health.json()["dependencies"]["influxdb"]["status"] == "up"
    assert health.json()["message"].startswith("redis unavailable") and health.json()["detail"]
    assert workers.status_code == 503
    assert "Redis is unavailable" in workers.json()["message"] and workers.json()["detail"]

    # Same API and worker processes, no restart: the API answers again at once ...
    wait_for(lambda: stack.client.get(f"/trainmodel/status/{running}").status_code == 200, timeout=10)
    api_back = time.monotonic() - restarted
    # ... the worker polls the queue again ...
    wait_for(lambda: stack.client.get("/health/worker").status_code == 200, timeout=30, what="worker back")
    worker_back = time.monotonic() - restarted
    # ... the job that trained through the outage records its outcome, and the queued one runs.
    trained_through = stack.poll_until_finished(running)[-1]
    assert trained_through["status"] == "SUCCESS" and trained_through["attempt"] == 1, trained_through
    assert stack.poll_until_finished(queued)[-1]["status"] == "SUCCESS"
    again = stack.client.post("/trainmodel/", json={"meter_id": "outage_c", "meter_type": "electricity"})
    assert again.status_code == 202, again.text
    assert stack.client.delete(f"/trainmodel/{again.json()['task_id']}").status_code == 200
    print(
        f"\nRedis down: POST answered 503 in {post_seconds:.2f} s, status in {get_seconds:.2f} s; "
        f"after restart the API answered in {api_back:.1f} s, the worker was live in {worker_back:.1f} s"
    )


def test_influxdb_down_retries_with_bounded_backoff_then_fails_as_connection(
    stack: Stack, servers: tuple[PersistentRedisServer, FreezableInfluxServer]
) -> None:
    _, influx_server = servers
    influx_server.stop()
    try:
        task_id = submit(stack, "outage_a")
        seen = stack.poll_until_finished(task_id, timeout=60)
        health = stack.client.get("/health/")
    finally:
        influx_server.start()

    final = seen[-1]
    assert final["status"] == "FAILED" and final["error"]["type"] == "CONNECTION", final
    assert final["attempt"] == MAX_ATTEMPTS
    assert "InfluxDB" in final["error"]["message"]
    history = status_history(stack.env["REDIS_URL"], task_id)
    retrying = [entry["message"] for entry in history if entry["status"] == "RETRYING"]
    assert len(retrying) == MAX_ATTEMPTS - 1
    assert "InfluxDB" in retrying[0] and f"Retrying (attempt 2 of {MAX_ATTEMPTS})" in retrying[0]
    starts = _attempt_starts(history)
    gaps = [(starts[n + 1] - starts[n]).total_seconds() for n in range(1, MAX_ATTEMPTS)]
    for gap in gaps:
        assert MIN_BACKOFF_SECONDS * 0.5 <= gap <= MAX_BACKOFF_SECONDS + 3.0, gaps
    assert health.status_code == 503 and health.json()["dependencies"]["influxdb"]["status"] == "down"
    assert health.json()["message"].startswith("influxdb unavailable")
    # The credentials appear in no status, health answer or log line.
    shown = [health.text, *(str(entry) for entry in history)]
    logs = [stack.worker.log_path, stack.api.log_path, *Path(stack.env["LOG_DIR"]).glob("*.log")]
    for text in shown + [path.read_text(errors="replace") for path in logs]:
        assert INFLUX_PASSWORD not in text


def test_frozen_influxdb_times_out_shows_retrying_and_the_job_recovers(
    stack: Stack, servers: tuple[PersistentRedisServer, FreezableInfluxServer]
) -> None:
    _, influx_server = servers
    influx_server.freeze()
    try:
        task_id = submit(stack, "outage_b")
        retrying = wait_for_status(stack, task_id, "RETRYING", timeout=20)
    finally:
        influx_server.thaw()

    assert "timed out" in retrying["message"].lower() or "timeout" in retrying["message"].lower(), retrying
    final = stack.poll_until_finished(task_id)[-1]
    assert final["status"] == "SUCCESS", final
    assert final["attempt"] >= 2
