"""A worker process SIGKILLed mid-training: the job is redelivered and completes; a poison job gives up.

The kill is real: the test finds the worker process that runs the job (its pid is registered in
Redis) and sends it SIGKILL while the job shows TRAINING_MODEL. ``dramatiq_worker.py`` starts a new
worker, and Dramatiq's queue maintenance hands the dead worker's unacknowledged message to it once
the dead worker's heartbeat is older than WORKER__HEARTBEAT_TIMEOUT_SECONDS (5 s here).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from forecasting.registry import ModelRegistry
from tests.integration.faults_support import (
    FINISHED,
    fault_stack,
    kill,
    leftover_files,
    live_worker_pids,
    process_alive,
    status,
    status_history,
    submit,
    the_worker_pid,
    tuner_dirs_of,
)
from tests.integration.stack import Stack, wait_for
from tests.service_processes import InfluxServer, RedisServer

MAX_ATTEMPTS = 2  # TRAINING__MAX_RETRIES=1


@pytest.fixture(scope="module")
def stack(influxdb_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("worker-faults")
    with (
        RedisServer() as private_redis,
        fault_stack(
            redis_server=private_redis,
            influx_server=influxdb_server,
            workdir=workdir,
            meters=("kill_meter", "poison_meter"),
            extra={"TRAINING__MAX_RETRIES": str(MAX_ATTEMPTS - 1)},
        ) as running,
    ):
        yield running


def _wait_training(stack: Stack, task_id: str, attempt: int) -> dict[str, Any]:
    def training() -> dict[str, Any] | None:
        body = status(stack, task_id)
        assert body["status"] not in FINISHED, f"finished before attempt {attempt} trained: {body}"
        return body if body["status"] == "TRAINING_MODEL" and body["attempt"] == attempt else None

    return wait_for(training, timeout=90, interval=0.05, what=f"attempt {attempt} to train")


def _forecast(stack: Stack, meter_id: str) -> dict[str, Any]:
    reply = stack.client.post(
        "/forecast/",
        json={
            "meter_id": meter_id,
            "meter_type": "electricity",
            "start_date": "2018-08-01",
            "end_date": "2018-08-04",
        },
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_killed_worker_job_is_redelivered_completes_and_keeps_the_active_model(stack: Stack) -> None:
    first = stack.poll_until_finished(submit(stack, "kill_meter"))[-1]
    assert first["status"] == "SUCCESS", first
    active_before = first["result"]["details"]["model_version"]
    models_dir = Path(stack.env["MODELS_DIR"])
    # A tiny budget may not beat the seasonal naive; the test needs an active network either way.
    ModelRegistry(models_dir).activate("electricity", "kill_meter", active_before)

    task_id = submit(stack, "kill_meter")
    _wait_training(stack, task_id, attempt=1)
    victim = the_worker_pid(stack)
    killed_at = kill(victim)

    # While no worker runs the job, the previously active model still serves forecasts.
    assert not process_alive(victim) or wait_for(lambda: not process_alive(victim), timeout=5)
    during = _forecast(stack, "kill_meter")
    assert during["model_version"] == active_before and during["model_kind"] != "seasonal_naive"
    assert status(stack, task_id)["status"] == "TRAINING_MODEL", "a lost run must not look finished"

    resumed = _wait_training(stack, task_id, attempt=2)
    resumed_after = time.monotonic() - killed_at
    seen = stack.poll_until_finished(task_id)
    final = seen[-1]
    print(f"\nworker SIGKILL -> job training again (attempt 2): {resumed_after:.1f} s")

    assert final["status"] == "SUCCESS" and final["attempt"] == 2, json.dumps(final, indent=1)
    assert resumed["progress"] >= 50
    history = status_history(stack.env["REDIS_URL"], task_id)
    assert [entry["attempt"] for entry in history if entry["status"] == "SUCCESS"] == [2]
    assert max(entry["attempt"] for entry in history) == 2
    new_pid = the_worker_pid(stack)
    assert new_pid != victim
    # Nothing half-written: no staging left in the model store, every version complete, the killed
    # worker's keras-tuner folder removed by its successor at boot.
    assert leftover_files(models_dir) == []
    versions = ModelRegistry(models_dir).list_versions("electricity", "kill_meter")
    assert {v.version for v in versions} >= {active_before, final["result"]["details"]["model_version"]}
    version_dirs = [p for p in (models_dir / "electricity" / "kill_meter").iterdir() if p.name[0].isdigit()]
    assert len(version_dirs) == len(versions) == 2
    assert tuner_dirs_of(victim) == []
    assert _forecast(stack, "kill_meter")["model_version"] in {v.version for v in versions}


def test_job_that_kills_its_worker_every_time_fails_after_bounded_attempts(stack: Stack) -> None:
    task_id = submit(stack, "poison_meter")
    victims = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        _wait_training(stack, task_id, attempt)
        victims.append(the_worker_pid(stack))
        kill(victims[-1])

    final = stack.poll_until_finished(task_id, timeout=120)[-1]

    assert final["status"] == "FAILED", final
    assert final["error"]["type"] == "INTERNAL"
    assert f"Gave up after {MAX_ATTEMPTS} attempts" in final["error"]["message"]
    assert final["attempt"] == MAX_ATTEMPTS + 1
    assert len(set(victims)) == MAX_ATTEMPTS
    # The message is acknowledged, not looping: nothing left in the queue or awaiting an ack.
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    wait_for(lambda: client.hlen("dramatiq:training.msgs") == 0, timeout=15, what="the message to be acked")
    assert client.llen("dramatiq:training") == 0
    assert live_worker_pids(stack.env["REDIS_URL"]), "the supervisor keeps a worker running"
    client.close()
