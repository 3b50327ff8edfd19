"""Property-based requests generated from the OpenAPI schema against a real API process: never a 5xx.

Schemathesis derives valid and invalid requests for every operation; a bounded number per
operation keeps the module to seconds. The API runs on a private Redis (generated jobs are queued
there, with no worker) and an InfluxDB database without data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.integration.faults_support import api_only
from tests.integration.stack import Stack, stack_environment
from tests.service_processes import InfluxServer, RedisServer

MAX_EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def api(influxdb_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    with RedisServer() as private_redis:
        env = stack_environment(
            redis_url=private_redis.url,
            influx_url=influxdb_server.url,
            database=f"schema_{uuid.uuid4().hex[:8]}",
            workdir=workdir,
        )
        with api_only(env, workdir) as running:
            yield running


def test_no_generated_request_gets_a_server_error(api: Stack) -> None:
    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    failures: list[str] = []
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue  # an event stream stays open by design; it has its own tests
        checked.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=api.base_url, timeout=30)
            # /health/* answers 503 by design while a dependency (here: any worker) is missing.
            reports_health = case.path.startswith("/health") and response.status_code == 503
            if response.status_code >= 500 and not reports_health:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                )

        no_server_error()

    assert len(checked) >= 6, checked
    assert failures == [], "\n".join(failures[:10])
