"""How many training workers are alive and how much work waits, read from Dramatiq's Redis keys.

Dramatiq has no API for this, but its Redis broker keeps everything in plain keys (see
``dramatiq/brokers/redis/dispatch.lua``, dramatiq 2.x): a sorted set of broker heartbeats scored in
epoch milliseconds, a list of ready message ids per queue, the same for the delay queue ``<queue>.DQ``,
and a sorted set of dead-lettered message ids ``<queue>.XQ``. Reading them directly lets the API's
health endpoint answer without a broker of its own.

Every broker refreshes its heartbeat on *any* command, so a process that only enqueues (the API) would
look like a live worker after each send. Worker processes therefore register their broker id in
``<namespace>:__training_workers__`` at boot (:func:`register_worker`), and only registered ids with a fresh
heartbeat count as live workers.
"""

from __future__ import annotations

import time
from typing import Any

import redis
import redis.asyncio
from pydantic import BaseModel, Field

from service.job_store import redis_errors_as_unavailable

DEFAULT_HEARTBEAT_TIMEOUT_MS = 60_000  # Dramatiq's own default for declaring a worker dead


def worker_registry_key(namespace: str = "dramatiq") -> str:
    return f"{namespace}:__training_workers__"


def register_worker(
    redis: redis.Redis, broker_id: str, description: str, *, namespace: str = "dramatiq"
) -> None:
    """Mark a broker id as a worker's (not an API's), so its heartbeats count."""
    with redis_errors_as_unavailable(redis):
        redis.hset(worker_registry_key(namespace), broker_id, description)


def unregister_worker(redis: redis.Redis, broker_id: str, *, namespace: str = "dramatiq") -> None:
    with redis_errors_as_unavailable(redis):
        redis.hdel(worker_registry_key(namespace), broker_id)


class WorkerHealth(BaseModel):
    live_workers: int = Field(description="Broker processes with a heartbeat within the timeout")
    worker_ids: list[str] = Field(description="Their Dramatiq broker ids")
    queue_depth: int = Field(description="Messages ready to run")
    delayed_depth: int = Field(description="Delayed messages (retries with backoff) not yet taken")
    dead_letters: int = Field(description="Messages that exhausted their retries")


def _queue_reads(pipe: Any, *, namespace: str, queue: str, heartbeat_timeout_ms: int) -> None:
    # Dramatiq declares a worker dead when its score <= now - timeout, so live means strictly greater.
    oldest_live = int(time.time() * 1000) - heartbeat_timeout_ms
    pipe.zrangebyscore(f"{namespace}:__heartbeats__", f"({oldest_live}", "+inf")
    pipe.llen(f"{namespace}:{queue}")
    pipe.llen(f"{namespace}:{queue}.DQ")
    pipe.zcard(f"{namespace}:{queue}.XQ")
    pipe.hkeys(worker_registry_key(namespace))


def _health_from(replies: list[Any]) -> WorkerHealth:
    beating, ready, delayed, dead, registered = replies
    workers = {wid.decode() if isinstance(wid, bytes) else wid for wid in registered}
    ids = sorted(
        wid for wid in (w.decode() if isinstance(w, bytes) else w for w in beating) if wid in workers
    )
    return WorkerHealth(
        live_workers=len(ids), worker_ids=ids, queue_depth=ready, delayed_depth=delayed, dead_letters=dead
    )


def read_worker_health(
    redis: redis.Redis,
    *,
    namespace: str = "dramatiq",
    queue: str = "training",
    heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS,
) -> WorkerHealth:
    """Worker and queue counts; raises StoreUnavailableError when Redis is down."""
    with redis_errors_as_unavailable(redis):
        pipe = redis.pipeline(transaction=False)
        _queue_reads(pipe, namespace=namespace, queue=queue, heartbeat_timeout_ms=heartbeat_timeout_ms)
        return _health_from(pipe.execute())


async def read_worker_health_async(
    redis: redis.asyncio.Redis,
    *,
    namespace: str = "dramatiq",
    queue: str = "training",
    heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS,
) -> WorkerHealth:
    """:func:`read_worker_health` for the asyncio client of the FastAPI app."""
    with redis_errors_as_unavailable(redis):
        pipe = redis.pipeline(transaction=False)
        _queue_reads(pipe, namespace=namespace, queue=queue, heartbeat_timeout_ms=heartbeat_timeout_ms)
        return _health_from(await pipe.execute())
