"""Shared, lazily built clients for the routes (one per API process)."""

from __future__ import annotations

from functools import lru_cache

import redis

from config import Settings, get_settings
from forecasting.registry import ModelRegistry
from service.job_store import AsyncJobStore, JobStore, connect_async_redis, connect_redis


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    settings = get_settings()
    return connect_redis(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)


@lru_cache(maxsize=1)
def job_store() -> JobStore:
    return JobStore(redis_client(), ttl_seconds=get_settings().status_ttl_seconds)


@lru_cache(maxsize=1)
def _shared_async_job_store() -> AsyncJobStore:
    settings = get_settings()
    client = connect_async_redis(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)
    return AsyncJobStore(client, ttl_seconds=settings.status_ttl_seconds)


async def async_job_store() -> AsyncJobStore:
    """The store for async routes (connections belong to the server's event loop).

    async, like :func:`settings`: FastAPI runs a plain-def dependency in its threadpool.
    """
    return _shared_async_job_store()


@lru_cache(maxsize=1)
def model_registry() -> ModelRegistry:
    return ModelRegistry(get_settings().models_dir)


async def settings() -> Settings:
    # async: FastAPI runs a plain-def dependency in its threadpool, a thread hop per request for a lookup.
    return get_settings()
