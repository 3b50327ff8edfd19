"""A job over its time limit ends FAILED with type TIMEOUT, though the time is spent inside TensorFlow.

The limit is the smallest allowed (10 s) and the budget far larger (hundreds of epochs, several
trials, no early stop), so the job is interrupted in the middle of Keras' fit loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from forecasting.registry import ModelRegistry
from tests.integration.faults_support import fault_stack, leftover_files, submit, the_worker_pid
from tests.integration.stack import Stack, wait_for
from tests.service_processes import InfluxServer, RedisServer

TIME_LIMIT_SECONDS = 10


@pytest.fixture(scope="module")
def stack(influxdb_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with (
        RedisServer() as private_redis,
        fault_stack(
            redis_server=private_redis,
            influx_server=influxdb_server,
            workdir=tmp_path_factory.mktemp("time-limit"),
            meters=("slow_meter",),
            extra={
                "TRAINING__TIME_LIMIT_SECONDS": str(TIME_LIMIT_SECONDS),
                "TRAINING__EPOCHS": "1000",
                "TRAINING__PATIENCE": "1000",
                "TRAINING__MAX_TRIALS": "5",
                "TRAINING__BATCH_SIZE": "8",
            },
        ) as running,
    ):
        yield running


def test_job_over_its_time_limit_fails_as_timeout_and_the_worker_carries_on(stack: Stack) -> None:
    worker = the_worker_pid(stack)
    task_id = submit(stack, "slow_meter")

    seen = stack.poll_until_finished(task_id, timeout=TIME_LIMIT_SECONDS + 30)

    final = seen[-1]
    assert final["status"] == "FAILED" and final["error"]["type"] == "TIMEOUT", final
    assert f"time limit of {TIME_LIMIT_SECONDS} s" in final["error"]["message"]
    assert "TRAINING_MODEL" in [entry["status"] for entry in seen]
    assert final["attempt"] == 1
    models_dir = Path(stack.env["MODELS_DIR"])
    assert ModelRegistry(models_dir).list_versions("electricity", "slow_meter") == []
    assert leftover_files(models_dir) == []
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    wait_for(
        lambda: not client.exists("ef:meter-lease:electricity:slow_meter"), timeout=10, what="lease freed"
    )
    client.close()
    assert the_worker_pid(stack) == worker, "a timeout interrupts the job, not the worker process"
