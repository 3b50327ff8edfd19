"""Duplicate requests, cancellation (queued and running) and worker recycling, on the real stack.

One worker process that recycles itself after every two jobs (WORKER__MAX_JOBS_PER_PROCESS=2).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from forecasting.registry import ModelRegistry
from tests.integration.faults_support import (
    fault_stack,
    live_worker_pids,
    process_alive,
    status_history,
    submit,
    wait_for_status,
)
from tests.integration.stack import Stack, wait_for
from tests.service_processes import InfluxServer, RedisServer

MAX_JOBS_PER_PROCESS = 2


@pytest.fixture(scope="module")
def stack(influxdb_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with (
        RedisServer() as private_redis,
        fault_stack(
            redis_server=private_redis,
            influx_server=influxdb_server,
            workdir=tmp_path_factory.mktemp("job-control"),
            meters=("dup_meter", "busy_meter", "pending_meter", "cancel_meter", "recycle_meter"),
            extra={"WORKER__MAX_JOBS_PER_PROCESS": str(MAX_JOBS_PER_PROCESS)},
        ) as running,
    ):
        yield running


def _redis(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)


def _queue_drained(client: redis.Redis) -> bool:
    return client.llen("dramatiq:training") == 0 and client.hlen("dramatiq:training.msgs") == 0


def test_second_request_for_an_active_meter_returns_the_same_job(stack: Stack) -> None:
    first = stack.client.post("/trainmodel/", json={"meter_id": "dup_meter", "meter_type": "electricity"})
    second = stack.client.post("/trainmodel/", json={"meter_id": "dup_meter", "meter_type": "electricity"})

    assert first.status_code == 202 and second.status_code == 200, (first.text, second.text)
    assert second.json()["task_id"] == first.json()["task_id"]
    assert "already queued or running" in second.json()["message"]
    assert second.headers["location"] == f"/trainmodel/status/{first.json()['task_id']}"

    task_id = first.json()["task_id"]
    cancelled = stack.client.delete(f"/trainmodel/{task_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    again = stack.client.delete(f"/trainmodel/{task_id}")
    assert again.status_code == 409 and "already finished with status CANCELLED" in again.json()["detail"]
    assert stack.client.delete("/trainmodel/no-such-task").status_code == 404
    # Once the job is finished, the meter takes a new one.
    fresh = stack.client.post("/trainmodel/", json={"meter_id": "dup_meter", "meter_type": "electricity"})
    assert fresh.status_code == 202 and fresh.json()["task_id"] != task_id
    assert stack.client.delete(f"/trainmodel/{fresh.json()['task_id']}").status_code == 200


def test_cancelled_queued_job_never_starts(stack: Stack) -> None:
    busy = submit(stack, "busy_meter")
    wait_for_status(stack, busy, "TRAINING_MODEL")
    queued = submit(stack, "pending_meter")

    reply = stack.client.delete(f"/trainmodel/{queued}")

    assert reply.status_code == 200 and reply.json()["status"] == "CANCELLED"
    assert stack.poll_until_finished(busy)[-1]["status"] == "SUCCESS"
    client = _redis(stack)
    wait_for(lambda: _queue_drained(client), timeout=30, what="the cancelled message to be consumed")
    client.close()
    history = [entry["status"] for entry in status_history(stack.env["REDIS_URL"], queued)]
    assert history == ["PENDING", "CANCELLED"]
    assert ModelRegistry(Path(stack.env["MODELS_DIR"])).list_versions("electricity", "pending_meter") == []


def test_cancelled_running_job_stops_at_the_next_epoch_and_keeps_the_active_model(stack: Stack) -> None:
    registry = ModelRegistry(Path(stack.env["MODELS_DIR"]))
    active = registry.save_version(
        "electricity",
        "cancel_meter",
        write_artifacts=lambda directory: (directory / "model.keras").write_bytes(b"the served model"),
        metadata={"model_kind": "seasonal_naive"},
        activate=True,
    )
    task_id = submit(stack, "cancel_meter")
    wait_for_status(stack, task_id, "TRAINING_MODEL")

    reply = stack.client.delete(f"/trainmodel/{task_id}")
    cancelled_at = time.monotonic()

    assert reply.status_code == 200 and reply.json()["status"] == "CANCELLED"
    client = _redis(stack)
    lease = "ef:meter-lease:electricity:cancel_meter"
    wait_for(lambda: not client.exists(lease), timeout=30, what="the run to stop")
    stopped_after = time.monotonic() - cancelled_at
    client.close()
    print(f"\nDELETE of a running job -> its run stopped after {stopped_after:.1f} s")
    final = stack.client.get(f"/trainmodel/status/{task_id}").json()
    assert final["status"] == "CANCELLED" and final["progress"] < 90
    assert [v.version for v in registry.list_versions("electricity", "cancel_meter")] == [active.version]
    assert registry.active_version("electricity", "cancel_meter").version == active.version
    assert "job_cancelled" in stack.worker.output(tail=400)


def _single_live_worker(stack: Stack) -> int:
    def one() -> int | None:
        pids = live_worker_pids(stack.env["REDIS_URL"])
        healthy = stack.client.get("/health/worker").status_code == 200
        return pids[0] if len(pids) == 1 and healthy else None

    return wait_for(one, timeout=60, interval=0.1, what="one live worker")


def test_worker_process_is_replaced_after_max_jobs_and_no_job_is_lost(stack: Stack) -> None:
    pids, finals = [], []
    for _ in range(MAX_JOBS_PER_PROCESS + 1):
        pids.append(_single_live_worker(stack))
        finals.append(stack.poll_until_finished(submit(stack, "recycle_meter"))[-1])

    assert [(final["status"], final["attempt"]) for final in finals] == [("SUCCESS", 1)] * 3, finals
    assert len(set(pids)) >= 2, f"no new worker process in {MAX_JOBS_PER_PROCESS + 1} jobs: {pids}"
    assert not process_alive(pids[0]) or pids[0] == pids[-1]
    recycled = [line for line in stack.worker.output(tail=2000).splitlines() if "worker_exited" in line]
    assert recycled and all("returncode=0" in line for line in recycled), recycled
