"""Two worker processes get a message for the same meter at the same moment: they never train it together.

The API's per-meter slot stops a second request, so the race is staged below the API, the way a
redelivery or a cancel-then-retrain produces it: two queued jobs for one meter, both messages on
the queue, two idle workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from api.training_queue import training_message
from service.job_store import JobStore, connect_redis
from tests.integration.faults_support import fault_stack, live_worker_pids, status_history
from tests.integration.stack import Stack, wait_for
from tests.service_processes import InfluxServer, RedisServer

METER = ("race_meter", "electricity")


@pytest.fixture(scope="module")
def stack(influxdb_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with (
        RedisServer() as private_redis,
        fault_stack(
            redis_server=private_redis,
            influx_server=influxdb_server,
            workdir=tmp_path_factory.mktemp("meter-race"),
            meters=(METER[0],),
            extra={"WORKER__PROCESSES": "2"},
        ) as running,
    ):
        yield running


def _run_window(history: list[dict[str, object]]) -> tuple[datetime, datetime]:
    """From the job's STARTED to its final status."""
    started = next(entry for entry in history if entry["status"] == "STARTED")
    return datetime.fromisoformat(str(started["updated_at"])), datetime.fromisoformat(
        str(history[-1]["updated_at"])
    )


def test_two_workers_never_train_the_same_meter_at_the_same_time(stack: Stack) -> None:
    url = stack.env["REDIS_URL"]
    wait_for(lambda: len(live_worker_pids(url)) == 2, timeout=60, what="two live workers")
    client = connect_redis(url, timeout_seconds=2)
    store = JobStore(client, ttl_seconds=3600)
    messages = [training_message(*METER, queue="training") for _ in range(2)]
    for message in messages:
        _, created = store.create_pending(message.message_id, *METER)
        assert created
        client.delete(store.keys.meter_slot(METER[1], METER[0]))  # what a race would get past
    broker = RedisBroker(client=redis.Redis.from_url(url))
    for message in messages:
        broker.enqueue(message)

    finals = [stack.poll_until_finished(message.message_id)[-1] for message in messages]

    assert [final["status"] for final in finals] == ["SUCCESS", "SUCCESS"], finals
    histories = [status_history(url, message.message_id) for message in messages]
    first, second = sorted((_run_window(history) for history in histories), key=lambda window: window[0])
    assert first[1] <= second[0], f"runs overlap: {first} and {second}"
    waited = [
        entry for history in histories for entry in history if "Waiting for another run" in entry["message"]
    ]
    assert waited, "the second worker should have received its message while the first one trained"
    assert all(final["attempt"] == 1 for final in finals)
    broker.close()
    client.close()
