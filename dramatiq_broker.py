"""The Dramatiq broker, built in one place from settings.

Every process that sends or runs jobs imports this module first, so actors bind to this broker.
"""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage

from config import Settings, get_settings


def build_broker(settings: Settings) -> RedisBroker:
    """A Redis broker whose connections time out instead of hanging when Redis is away."""
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout_seconds,
        socket_timeout=max(10.0, settings.redis_timeout_seconds),
        health_check_interval=30,
    )
    broker = RedisBroker(
        client=client,
        heartbeat_timeout=settings.worker.heartbeat_timeout_seconds * 1000,
        maintenance_chance=settings.worker.maintenance_chance,
    )
    broker.add_middleware(CurrentMessage())
    return broker


broker = build_broker(get_settings())
dramatiq.set_broker(broker)
