"""Clients and stores on the session's Redis, each test in its own key namespace (no flushing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from config.settings import InfluxSettings
from forecasting.importer import import_meter_csv
from service.job_store import JobStore, connect_redis
from tests.integration.stack import PROJECT_DIR, Stack, stack_environment
from tests.service_processes import InfluxServer, RedisServer, find_free_port

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


@pytest.fixture(scope="module")
def observed_stack(
    redis_server: RedisServer, influxdb_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """API and worker processes with the real ``pjm_ekpc`` meter in InfluxDB (tiny training budget).

    The workers serve their Prometheus metrics on a free loopback port, in ``stack.env``
    (``WORKER__METRICS_PORT``). Redis is flushed first, so queue and worker gauges start from zero.
    """
    workdir = tmp_path_factory.mktemp("observed-stack")
    database = f"obs_{uuid.uuid4().hex[:10]}"
    influx = InfluxSettings(url=influxdb_server.url, database=database, timeout_seconds=10)
    import_meter_csv(
        PROJECT_DIR / "data" / "meters" / "electricity__pjm_ekpc.csv",
        influx,
        meter_id="pjm_ekpc",
        meter_type="electricity",
    )
    redis.Redis.from_url(redis_server.url).flushdb()
    env = stack_environment(
        redis_url=redis_server.url,
        influx_url=influxdb_server.url,
        database=database,
        workdir=workdir,
        extra={"WORKER__METRICS_HOST": "127.0.0.1", "WORKER__METRICS_PORT": str(find_free_port())},
    )
    running = Stack(env, workdir)
    try:
        running.start()
        yield running
    finally:
        running.stop()
