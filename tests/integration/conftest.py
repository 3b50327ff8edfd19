"""Clients and stores on the session's Redis, each test in its own key namespace (no flushing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from service.job_store import JobStore, connect_redis
from tests.service_processes import RedisServer

STORE_TTL_SECONDS = 3600


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    redis_server.start()  # no-op unless an outage test left it stopped
    client = connect_redis(redis_server.url, timeout_seconds=2.0)
    yield client
    client.close()


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def job_store(redis_client: redis.Redis, namespace: str) -> JobStore:
    return JobStore(redis_client, ttl_seconds=STORE_TTL_SECONDS, namespace=namespace)
