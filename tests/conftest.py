"""Shared fixtures: real Redis and InfluxDB servers for the whole session, settings per test.

Tests under ``tests/integration/`` are marked ``integration`` automatically. When a server binary
is missing they skip locally, but fail under ``CI=true``, where a missing service is a broken build.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config.settings import InfluxSettings
from tests.service_processes import InfluxServer, RedisServer, ServiceBinaryMissingError

_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def _start_or_skip(server: RedisServer | InfluxServer) -> None:
    try:
        server.start()
    except ServiceBinaryMissingError as error:
        server.cleanup()
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private ``redis-server`` on a free port; tests may stop/restart it (same port and data)."""
    server = RedisServer()
    _start_or_skip(server)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def influxdb_server() -> Iterator[InfluxServer]:
    """A private InfluxDB 1.x on a free port; tests may stop/restart it (same port and data)."""
    server = InfluxServer()
    _start_or_skip(server)
    yield server
    server.cleanup()


@pytest.fixture
def influx_settings(influxdb_server: InfluxServer) -> Iterator[InfluxSettings]:
    """Settings for the test server with a database name no other test uses (not yet created)."""
    influxdb_server.start()  # no-op when running; revives it if an outage test left it stopped
    settings = InfluxSettings(
        version=1, url=influxdb_server.url, database=f"test_{uuid.uuid4().hex[:12]}", timeout_seconds=5.0
    )
    yield settings
    if influxdb_server.running:
        # Best effort: the database may never have been created.
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                f"{influxdb_server.url}/query",
                data={"q": f'DROP DATABASE "{settings.database}"'},
                timeout=5.0,
            )
