"""JobStore and AsyncJobStore against a real redis-server: dedupe, atomicity, TTLs, rules, outages."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from service.job_status import JobState, JobStatus
from service.job_store import (
    AsyncJobStore,
    JobAlreadyFinishedError,
    JobNotFoundError,
    JobStore,
    StoreUnavailableError,
    connect_async_redis,
    connect_redis,
)
from service.job_transitions import CANCELLED_MESSAGE, PENDING_MESSAGE
from tests.integration.conftest import STORE_TTL_SECONDS
from tests.service_processes import RedisServer

FINISHERS: dict[str, Callable[[JobStore, str], object]] = {
    "succeed": lambda store, task_id: store.succeed(task_id, {"mape": 4.2}, "Model trained"),
    "fail": lambda store, task_id: store.fail(task_id, "DATA", "No readings"),
    "cancel": lambda store, task_id: store.cancel(task_id),
}


def _new_id() -> str:
    return uuid.uuid4().hex


def test_create_pending__writes_pending_status(job_store: JobStore) -> None:
    status, created = job_store.create_pending("t1", "meter-1", "electricity")

    assert created
    assert (status.status, status.progress, status.message) == (JobState.PENDING, 0, PENDING_MESSAGE)
    assert status.updated_at.tzinfo is not None and status.started_at is None
    assert job_store.get("t1") == status


def test_create_pending__second_request_for_active_meter_returns_running_task(job_store: JobStore) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    job_store.update("t1", JobState.FETCHING_DATA, message="Reading history")

    second, created = job_store.create_pending("t2", "meter-1", "electricity")
    other_meter, other_created = job_store.create_pending("t3", "meter-1", "gas")

    assert not created and second.task_id == "t1" and second.status is JobState.FETCHING_DATA
    assert other_created and other_meter.task_id == "t3"  # the slot is per (type, meter)
    assert job_store.get("t2") is None


def test_create_pending__same_task_id_twice_is_idempotent(job_store: JobStore) -> None:
    first, _ = job_store.create_pending("t1", "meter-1", "electricity")
    again, created = job_store.create_pending("t1", "meter-1", "electricity")

    assert not created and again == first


@pytest.mark.parametrize("finish", FINISHERS.keys())
def test_create_pending__slot_frees_when_job_finishes(job_store: JobStore, finish: str) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    FINISHERS[finish](job_store, "t1")

    status, created = job_store.create_pending("t2", "meter-1", "electricity")

    assert created and status.task_id == "t2"


def test_create_pending__slot_of_expired_job_is_free(job_store: JobStore, redis_client: redis.Redis) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    redis_client.delete(job_store.keys.job("t1"))  # as if its TTL ran out

    status, created = job_store.create_pending("t2", "meter-1", "electricity")

    assert created and status.task_id == "t2"


def test_finishing_an_old_job_keeps_the_newer_jobs_slot(
    job_store: JobStore, redis_client: redis.Redis
) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    redis_client.delete(job_store.keys.job("t1"))
    job_store.create_pending("t2", "meter-1", "electricity")

    assert job_store.fail("t1", "INTERNAL", "late") is None  # t1 is gone; nothing written
    again, created = job_store.create_pending("t3", "meter-1", "electricity")

    assert not created and again.task_id == "t2"


@pytest.mark.parametrize("meter_id", [f"meter-{n}" for n in range(15)])  # races are probabilistic
def test_create_pending__concurrent_requests_create_exactly_one(job_store: JobStore, meter_id: str) -> None:
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    outcomes: list[tuple[JobStatus, bool]] = []
    lock = threading.Lock()

    def request(task_id: str) -> None:
        barrier.wait()
        outcome = job_store.create_pending(task_id, meter_id, "electricity")
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=request, args=(f"{meter_id}-t{n}",)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    created = [status.task_id for status, was_created in outcomes if was_created]
    assert len(outcomes) == threads_count
    assert len(created) == 1
    assert {status.task_id for status, _ in outcomes} == set(created)
    assert job_store.get(created[0]) is not None


def test_keys_carry_the_status_ttl(job_store: JobStore, redis_client: redis.Redis) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    redis_client.expire(job_store.keys.job("t1"), 10)
    job_store.update("t1", JobState.STARTED, message="Started")  # refreshes the TTL

    for key in (job_store.keys.job("t1"), job_store.keys.events("t1")):
        assert STORE_TTL_SECONDS - 5 <= redis_client.ttl(key) <= STORE_TTL_SECONDS, key
    assert 0 < redis_client.ttl(job_store.keys.meter_slot("electricity", "meter-1")) <= STORE_TTL_SECONDS


def test_update__progress_defaults_to_stage_and_never_decreases(job_store: JobStore) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")

    started = job_store.update("t1", JobState.STARTED, message="Started")
    training = job_store.update("t1", JobState.TRAINING_MODEL, message="Trial 1", progress=70)
    stale = job_store.update("t1", JobState.TRAINING_MODEL, message="Trial 1, epoch 2", progress=60)
    saving = job_store.update("t1", JobState.SAVING_MODEL, message="Saving")

    assert started is not None and started.progress == 0 and started.started_at is not None
    assert training is not None and training.progress == 70
    assert stale is not None and stale.progress == 70 and stale.message == "Trial 1, epoch 2"
    assert saving is not None and saving.progress == 90
    assert saving.started_at == started.started_at
    assert saving.updated_at >= training.updated_at


def test_update__redelivery_starts_a_new_attempt_from_zero(job_store: JobStore) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    job_store.update("t1", JobState.STARTED, message="Started")
    job_store.update("t1", JobState.TRAINING_MODEL, message="Training", progress=60)

    retrying = job_store.update("t1", JobState.RETRYING, message="Influx timed out; retrying")
    restarted = job_store.update("t1", JobState.STARTED, message="Started again")
    late = job_store.update("t1", JobState.SAVING_MODEL, message="old delivery", attempt=1)

    assert retrying is not None and (retrying.progress, retrying.attempt) == (60, 1)
    assert restarted is not None and (restarted.progress, restarted.attempt) == (0, 2)
    assert late is not None and late == restarted  # the superseded delivery's report is ignored
    assert job_store.get("t1") == restarted


def test_update__unknown_task_returns_none(job_store: JobStore) -> None:
    assert job_store.update("nope", JobState.STARTED, message="Started") is None
    assert job_store.succeed("nope", {}, "done") is None


def test_finished_status_is_never_overwritten(job_store: JobStore) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    job_store.update("t1", JobState.TRAINING_MODEL, message="Training", progress=55)
    cancelled = job_store.cancel("t1")

    late_progress = job_store.update("t1", JobState.SAVING_MODEL, message="Saving")
    late_success = job_store.succeed("t1", {"mape": 1.0}, "Model trained")

    assert late_progress == cancelled and late_success == cancelled
    stored = job_store.get("t1")
    assert stored is not None and stored.status is JobState.CANCELLED and stored.result is None


def test_succeed_and_fail_record_result_and_error(job_store: JobStore) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    job_store.create_pending("t2", "meter-2", "electricity")

    succeeded = job_store.succeed("t1", {"mape": 4.2}, "Model trained")
    failed = job_store.fail("t2", "DATA", "No readings found")

    assert succeeded is not None and (succeeded.progress, succeeded.result) == (100, {"mape": 4.2})
    assert failed is not None and failed.status is JobState.FAILED
    assert failed.error is not None and (failed.error.type, failed.error.message) == (
        "DATA",
        "No readings found",
    )


def test_update__rejects_final_states(job_store: JobStore) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")

    with pytest.raises(ValueError, match="succeed"):
        job_store.update("t1", JobState.SUCCESS, message="done")


def test_events__stream_lists_every_change_in_order(job_store: JobStore) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    job_store.update("t1", JobState.STARTED, message="Started")
    job_store.update("t1", JobState.CONNECTING, message="Connecting")
    job_store.update("t1", JobState.CONNECTING, message="Connecting", attempt=0)  # ignored: no event

    events = job_store.events("t1")
    later = job_store.events("t1", last_id=events[1][0])

    assert [status.status for _, status in events] == [
        JobState.PENDING,
        JobState.STARTED,
        JobState.CONNECTING,
    ]
    assert [status.status for _, status in later] == [JobState.CONNECTING]
    assert job_store.events("t1", last_id=events[-1][0]) == []


def test_events__blocking_read_returns_the_next_change(job_store: JobStore) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    ((last_id, _),) = job_store.events("t1")
    received: list[list[tuple[str, JobStatus]]] = []
    reader = threading.Thread(target=lambda: received.append(job_store.events("t1", last_id, block_ms=1500)))
    reader.start()

    job_store.update("t1", JobState.STARTED, message="Started")
    reader.join(timeout=5)

    assert len(received) == 1 and [status.status for _, status in received[0]] == [JobState.STARTED]


def test_events__block_longer_than_socket_timeout_is_rejected(job_store: JobStore) -> None:
    with pytest.raises(ValueError, match="socket timeout"):
        job_store.events("t1", block_ms=5000)


def test_cancel__flags_the_worker_and_tells_unknown_from_finished(job_store: JobStore) -> None:
    job_store.create_pending("t1", "meter-1", "electricity")
    assert not job_store.is_cancel_requested("t1")

    cancelled = job_store.cancel("t1")

    assert (cancelled.status, cancelled.message) == (JobState.CANCELLED, CANCELLED_MESSAGE)
    assert job_store.is_cancel_requested("t1")
    with pytest.raises(JobAlreadyFinishedError) as finished:
        job_store.cancel("t1")
    assert finished.value.status == cancelled
    with pytest.raises(JobNotFoundError):
        job_store.cancel("unknown")


def test_async_store__applies_the_same_rules_to_the_same_keys(
    redis_server: RedisServer, namespace: str
) -> None:
    sync_store = JobStore(
        connect_redis(redis_server.url, timeout_seconds=2), ttl_seconds=60, namespace=namespace
    )

    async def scenario() -> tuple[bool, bool, JobStatus | None, JobStatus, list[JobState]]:
        client = connect_async_redis(redis_server.url, timeout_seconds=2)
        store = AsyncJobStore(client, ttl_seconds=60, namespace=namespace)
        try:
            _, created = await store.create_pending("a1", "meter-1", "electricity")
            _, duplicate = await store.create_pending("a2", "meter-1", "electricity")
            await store.update("a1", JobState.TRAINING_MODEL, message="Training", progress=70)
            lower = await store.update("a1", JobState.TRAINING_MODEL, message="Training", progress=50)
            cancelled = await store.cancel("a1")
            with pytest.raises(JobAlreadyFinishedError):
                await store.cancel("a1")
            assert await store.is_cancel_requested("a1")
            states = [status.status for _, status in await store.events("a1", block_ms=100)]
            return created, duplicate, lower, cancelled, states
        finally:
            await client.aclose()

    created, duplicate, lower, cancelled, states = asyncio.run(scenario())

    assert created and not duplicate
    assert lower is not None and lower.progress == 70
    assert sync_store.get("a1") == cancelled
    assert states == [JobState.PENDING, JobState.TRAINING_MODEL, JobState.TRAINING_MODEL, JobState.CANCELLED]
    assert sync_store.create_pending("a3", "meter-1", "electricity")[1]  # cancel freed the slot


# -- outages -----------------------------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server this module may stop without disturbing other tests."""
    with RedisServer() as server:
        yield server


def _assert_unavailable_quickly(
    call: Callable[[], object], *, within_seconds: float
) -> StoreUnavailableError:
    began = time.monotonic()
    with pytest.raises(StoreUnavailableError) as raised:
        call()
    assert time.monotonic() - began < within_seconds
    return raised.value


def test_store_unavailable__stopped_server_answers_fast_and_recovers(own_redis: RedisServer) -> None:
    store = JobStore(connect_redis(own_redis.url, timeout_seconds=2), ttl_seconds=60)
    store.create_pending("t1", "meter-1", "electricity")
    own_redis.stop()

    _assert_unavailable_quickly(lambda: store.get("t1"), within_seconds=3)
    _assert_unavailable_quickly(lambda: store.update("t1", JobState.STARTED, message="x"), within_seconds=3)
    _assert_unavailable_quickly(lambda: store.create_pending("t2", "m", "gas"), within_seconds=3)
    own_redis.start()  # no persistence: the server comes back empty

    assert store.create_pending("t2", "meter-1", "electricity")[1]


def test_pooled_connection_survives_a_server_restart(own_redis: RedisServer) -> None:
    store = JobStore(connect_redis(own_redis.url, timeout_seconds=2), ttl_seconds=60)
    store.create_pending("t1", "meter-1", "electricity")  # leaves a connection in the pool

    own_redis.restart()

    assert store.create_pending("t2", "meter-1", "electricity")[1]  # empty server: the slot is free


def test_store_unavailable__message_hides_the_password(own_redis: RedisServer) -> None:
    own_redis.stop()
    url = f"redis://:s3cret-pass@127.0.0.1:{own_redis.port}/0"
    store = JobStore(connect_redis(url, timeout_seconds=2), ttl_seconds=60)

    error = _assert_unavailable_quickly(lambda: store.get("t1"), within_seconds=3)

    assert "s3cret-pass" not in str(error) and str(own_redis.port) in str(error)


def test_store_unavailable__server_that_never_answers_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never replies
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        store = JobStore(connect_redis(url, timeout_seconds=0.5), ttl_seconds=60)

        _assert_unavailable_quickly(lambda: store.get("t1"), within_seconds=2.5)


def test_async_store_unavailable__stopped_server(own_redis: RedisServer) -> None:
    own_redis.stop()

    async def read() -> None:
        client = connect_async_redis(own_redis.url, timeout_seconds=2)
        try:
            await AsyncJobStore(client, ttl_seconds=60).get(_new_id())
        finally:
            await client.aclose()

    _assert_unavailable_quickly(lambda: asyncio.run(read()), within_seconds=3)
