"""MeterLease against a real redis-server: one holder at a time, expiry, renewal, safe release."""

from __future__ import annotations

import time

import redis

from service.meter_lease import MeterLease
from tests.integration.stack import wait_for


def _lease(client: redis.Redis, namespace: str, owner: str, ttl_seconds: float = 5.0) -> MeterLease:
    return MeterLease(client, f"{namespace}:meter-lease:electricity:m1", owner=owner, ttl_seconds=ttl_seconds)


def test_only_one_run_holds_a_meter_and_only_the_holder_releases_it(
    redis_client: redis.Redis, namespace: str
) -> None:
    first, second = _lease(redis_client, namespace, "run-1"), _lease(redis_client, namespace, "run-2")

    assert first.try_acquire()
    assert not second.try_acquire()
    assert not first.try_acquire(), "a second delivery of the same run must wait too"
    second.release()  # not the holder: no effect
    assert second.holder() == "run-1"
    first.release()
    assert second.try_acquire() and second.holder() == "run-2"


def test_a_lease_nobody_renews_expires(redis_client: redis.Redis, namespace: str) -> None:
    crashed = _lease(redis_client, namespace, "killed-run", ttl_seconds=0.3)
    assert crashed.try_acquire()

    successor = _lease(redis_client, namespace, "redelivered-run")

    wait_for(successor.try_acquire, timeout=5, interval=0.05, what="the dead run's lease to expire")
    assert not crashed.renew(), "a run whose lease expired and was taken must not get it back"


def test_kept_lease_outlives_its_ttl_and_is_released_at_the_end(
    redis_client: redis.Redis, namespace: str
) -> None:
    lease = _lease(redis_client, namespace, "long-run", ttl_seconds=0.3)
    rival = _lease(redis_client, namespace, "rival")
    assert lease.try_acquire()

    with lease.kept():
        # An observation window of more than three TTLs: the rival never finds the meter free.
        window_ends = time.monotonic() + 1.0
        while time.monotonic() < window_ends:
            assert not rival.try_acquire()
            time.sleep(0.05)

    assert lease.holder() is None
    assert rival.try_acquire()
