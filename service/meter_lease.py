"""A per-meter lease in Redis, so two workers never train the same meter at the same time.

The API's per-meter slot stops a second *request*, but messages can still race: a message redelivered
because its worker looked dead while it was only slow, or a new job queued right after a cancel while
the cancelled run is still finishing its epoch. Each run therefore holds a lease on its meter. The
lease expires by itself (a SIGKILLed worker cannot release it) and is renewed by a background thread
while the run lives; its TTL is the worker heartbeat timeout, the same time after which Dramatiq
redelivers a dead worker's messages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import structlog

from service.job_status import JobState
from service.job_store import JobStore, StoreUnavailableError, redis_errors_as_unavailable

log = structlog.get_logger("service.meter_lease")

# Compare-and-set scripts: only the holder may extend or release its lease.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class MeterLease:
    """An expiring lock on one key, held by ``owner`` (a task id)."""

    def __init__(self, client: redis.Redis, key: str, *, owner: str, ttl_seconds: float) -> None:
        self._redis, self.key, self.owner = client, key, owner
        self._ttl_ms = max(1, int(ttl_seconds * 1000))

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; raises StoreUnavailableError."""
        with redis_errors_as_unavailable(self._redis):
            return bool(self._redis.set(self.key, self.owner, nx=True, px=self._ttl_ms))

    def holder(self) -> str | None:
        with redis_errors_as_unavailable(self._redis):
            value = self._redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def renew(self) -> bool:
        """Extend the lease; False when it was lost (expired, or taken by another run)."""
        with redis_errors_as_unavailable(self._redis):
            return bool(self._redis.eval(_RENEW, 1, self.key, self.owner, self._ttl_ms))

    def release(self) -> None:
        with redis_errors_as_unavailable(self._redis):
            self._redis.eval(_RELEASE, 1, self.key, self.owner)

    @contextmanager
    def kept(self) -> Iterator[None]:
        """Renew the (already acquired) lease in the background until the block ends, then release it.

        A renewal that fails because Redis is away is logged and retried on the next tick: training
        does not need Redis, and the lease only matters once Redis is back.
        """
        stop = threading.Event()

        def renew_until_stopped() -> None:
            while not stop.wait(self._ttl_ms / 3000):
                try:
                    # Expired during a Redis outage: take it back unless another run holds it now.
                    if not self.renew() and not self.try_acquire():
                        log.warning("meter_lease_lost", key=self.key, holder=self.holder())
                except StoreUnavailableError as error:
                    log.warning("meter_lease_not_renewed", key=self.key, error=str(error))

        renewer = threading.Thread(target=renew_until_stopped, name="meter-lease", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            try:
                self.release()
            except StoreUnavailableError:
                log.warning("meter_lease_not_released", key=self.key)  # it expires by itself


def wait_for_meter(store: JobStore, lease: MeterLease, task_id: str, *, poll_seconds: float = 1.0) -> bool:
    """Take the meter's lease, waiting while another run trains the meter; False if the job ended meanwhile.

    The wait counts against the job's time limit, which bounds it.
    """
    waiting = False
    while not lease.try_acquire():
        status = store.get(task_id)
        if status is None or status.finished:
            log.info(
                "job_skipped", reason="finished while waiting for its meter", status=status and status.status
            )
            return False
        if not waiting:
            log.info("meter_busy", holder=lease.holder())
            if status.status is JobState.PENDING:
                store.update(
                    task_id, JobState.PENDING, message="Waiting for another run on this meter to stop"
                )
            waiting = True
        time.sleep(poll_seconds)
    status = store.get(task_id)  # it may have been cancelled (or finished by another delivery) meanwhile
    if status is None or status.finished:
        lease.release()
        log.info(
            "job_skipped", reason="finished while waiting for its meter", status=status and status.status
        )
        return False
    return True
