"""Shared, lazily built clients for the routes (one per API process)."""

from __future__ import annotations

from functools import lru_cache

import redis

from config import Settings, get_settings
from forecasting.registry import ModelRegistry
from service.job_store import JobStore, connect_redis


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    settings = get_settings()
    return connect_redis(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)


@lru_cache(maxsize=1)
def job_store() -> JobStore:
    return JobStore(redis_client(), ttl_seconds=get_settings().status_ttl_seconds)


@lru_cache(maxsize=1)
def model_registry() -> ModelRegistry:
    return ModelRegistry(get_settings().models_dir)


def settings() -> Settings:
    return get_settings()
