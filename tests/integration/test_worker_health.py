"""read_worker_health against keys laid out as Dramatiq's Redis broker writes them, and a real Worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from service.job_store import StoreUnavailableError, connect_async_redis, connect_redis
from service.worker_health import WorkerHealth, read_worker_health, read_worker_health_async, register_worker
from tests.service_processes import RedisServer


def _wait_for(condition: Callable[[], bool], *, timeout_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_reads_heartbeats_and_queue_depths(redis_client: redis.Redis, namespace: str) -> None:
    now_ms = int(time.time() * 1000)
    redis_client.zadd(f"{namespace}:__heartbeats__", {"worker-b": now_ms - 1000, "worker-a": now_ms})
    redis_client.zadd(f"{namespace}:__heartbeats__", {"worker-dead": now_ms - 120_000})
    redis_client.rpush(f"{namespace}:training", "m1", "m2", "m3")
    redis_client.rpush(f"{namespace}:training.DQ", "m4")
    redis_client.zadd(f"{namespace}:training.XQ", {"m5": now_ms, "m6": now_ms})
    redis_client.rpush(f"{namespace}:other", "m7")
    for worker_id in ("worker-a", "worker-b", "worker-dead"):
        register_worker(redis_client, worker_id, "test", namespace=namespace)

    health = read_worker_health(redis_client, namespace=namespace, queue="training")

    assert health == WorkerHealth(
        live_workers=2, worker_ids=["worker-a", "worker-b"], queue_depth=3, delayed_depth=1, dead_letters=2
    )


def test_heartbeat_timeout_decides_who_is_live(redis_client: redis.Redis, namespace: str) -> None:
    redis_client.zadd(f"{namespace}:__heartbeats__", {"worker-a": int(time.time() * 1000) - 5000})
    register_worker(redis_client, "worker-a", "test", namespace=namespace)

    assert (
        read_worker_health(redis_client, namespace=namespace, heartbeat_timeout_ms=10_000).live_workers == 1
    )
    assert read_worker_health(redis_client, namespace=namespace, heartbeat_timeout_ms=2_000).live_workers == 0


def test_empty_namespace_reads_zeroes(redis_client: redis.Redis, namespace: str) -> None:
    assert read_worker_health(redis_client, namespace=namespace) == WorkerHealth(
        live_workers=0, worker_ids=[], queue_depth=0, delayed_depth=0, dead_letters=0
    )


def test_async_reader_matches_sync(
    redis_server: RedisServer, redis_client: redis.Redis, namespace: str
) -> None:
    redis_client.zadd(f"{namespace}:__heartbeats__", {"worker-a": int(time.time() * 1000)})
    register_worker(redis_client, "worker-a", "test", namespace=namespace)
    redis_client.rpush(f"{namespace}:training", "m1")

    async def read() -> WorkerHealth:
        client = connect_async_redis(redis_server.url, timeout_seconds=2)
        try:
            return await read_worker_health_async(client, namespace=namespace)
        finally:
            await client.aclose()

    assert asyncio.run(read()) == read_worker_health(redis_client, namespace=namespace)


def test_real_dramatiq_worker_keeps_its_heartbeat_fresh(redis_server: RedisServer, namespace: str) -> None:
    def declare_probe(broker: RedisBroker) -> dramatiq.Actor:
        return dramatiq.actor(lambda: None, broker=broker, queue_name="training", actor_name="probe")

    producer = RedisBroker(url=redis_server.url, namespace=namespace)
    consumer = RedisBroker(url=redis_server.url, namespace=namespace)
    sender = declare_probe(producer)
    sender.send()
    sender.send()
    declare_probe(consumer)
    client = connect_redis(redis_server.url, timeout_seconds=2)
    queued = read_worker_health(client, namespace=namespace)
    worker = dramatiq.Worker(consumer, worker_threads=1)
    try:
        register_worker(client, consumer.broker_id, "test worker", namespace=namespace)
        worker.start()
        _wait_for(lambda: read_worker_health(client, namespace=namespace).queue_depth == 0)
        # The registered worker counts; the producer (beating from its sends, unregistered) never does.
        _wait_for(
            lambda: (
                read_worker_health(client, namespace=namespace, heartbeat_timeout_ms=2500).worker_ids
                == [consumer.broker_id]
            )
        )
    finally:
        worker.stop()
        producer.close()
        consumer.close()
        client.close()

    assert queued.queue_depth == 2
    assert queued.worker_ids == []  # the producer's heartbeat (from enqueueing) is not a worker's


def test_stopped_server_raises_store_unavailable() -> None:
    with RedisServer() as server:
        client = connect_redis(server.url, timeout_seconds=2)
        server.stop()

        with pytest.raises(StoreUnavailableError):
            read_worker_health(client)
