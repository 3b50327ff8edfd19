"""Is the service usable? The API's own state, its dependencies, and the workers."""

from __future__ import annotations

import time
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Response, status

from api import dependencies
from config import Settings
from forecasting.errors import ForecastingError
from forecasting.meter_history import open_meter_history
from service.worker_health import read_worker_health

router = APIRouter(prefix="/health", tags=["health"])


def _check(probe: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        probe()
    except (redis.RedisError, ForecastingError, OSError) as error:
        return {"status": "down", "error": str(error) or type(error).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _ping_influxdb(settings: Settings) -> None:
    history = open_meter_history(settings.influxdb)
    try:
        history.ping()
    finally:
        history.close()


@router.api_route("/", methods=["GET", "HEAD"])  # HEAD: load balancers probe with it
def health(
    response: Response,
    settings: Annotated[Settings, Depends(dependencies.settings)],
    client: Annotated[redis.Redis, Depends(dependencies.redis_client)],
) -> dict[str, Any]:
    """The API is up; 503 when Redis or InfluxDB is down (training cannot work then)."""
    dependencies_state = {
        "redis": _check(client.ping),
        "influxdb": _check(lambda: _ping_influxdb(settings)),
    }
    healthy = all(state["status"] == "up" for state in dependencies_state.values())
    body: dict[str, Any] = {
        "status": "healthy" if healthy else "unhealthy",
        "api": "up",
        "dependencies": dependencies_state,
    }
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        down = ", ".join(name for name, state in dependencies_state.items() if state["status"] != "up")
        body |= _unhealthy(f"{down} unavailable: training and forecasts cannot work until it is back.")
    return body


@router.api_route("/worker", methods=["GET", "HEAD"])
def worker_health(
    response: Response,
    settings: Annotated[Settings, Depends(dependencies.settings)],
    client: Annotated[redis.Redis, Depends(dependencies.redis_client)],
) -> dict[str, Any]:
    """Live workers (from Dramatiq's heartbeats in Redis) and queue depth; 503 when no worker is alive."""
    try:
        workers = read_worker_health(
            client,
            queue=settings.worker.queue,
            heartbeat_timeout_ms=settings.worker.heartbeat_timeout_seconds * 1000,
        )
    except redis.RedisError as error:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {
            "status": "unhealthy",
            "error": f"Redis unavailable: {type(error).__name__}",
            **_unhealthy("Redis is unavailable, so no worker can be seen; try again shortly."),
        }
    body = {"status": "healthy" if workers.live_workers else "unhealthy", **workers.model_dump()}
    if workers.live_workers == 0:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        body |= _unhealthy("No training worker is alive: start one with 'python dramatiq_worker.py'.")
    return body


def _unhealthy(message: str) -> dict[str, str]:
    """The two keys every error answer of this API has, next to the health report itself."""
    return {"detail": message, "message": message}
