"""Training-job statuses in Redis, shared by the API (queues, reads, cancels) and the worker (progress).

Dramatiq forgets results after minutes; users poll for days, so each status lives in its own key with a
long TTL, and every change is also appended to a capped stream an SSE endpoint can follow. A per-meter
slot key makes a second request for a meter that is still being trained return the running job.

The rules for how a status may change are pure functions in :mod:`service.job_transitions`, so the
worker's :class:`JobStore` and the API's :class:`AsyncJobStore` apply the same ones; the stores only run
them inside WATCH/MULTI transactions so concurrent writers (API cancel, worker progress, a redelivered
message) cannot interleave.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from service.job_status import FINISHED_STATES, JobError, JobState, JobStatus
from service.job_transitions import CANCELLED_MESSAGE, finished_status, pending_status, progressed_status

EVENTS_MAXLEN = 1000


class JobStoreError(Exception):
    """Base class for failures of the job status store."""


class StoreUnavailableError(JobStoreError):
    """Redis could not be reached or did not answer in time (the API answers 503)."""


class JobNotFoundError(JobStoreError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"No training task with id '{task_id}' (unknown or expired)")
        self.task_id = task_id


class JobAlreadyFinishedError(JobStoreError):
    def __init__(self, status: JobStatus) -> None:
        super().__init__(f"Task '{status.task_id}' already finished with status {status.status.value}")
        self.status = status


# -- connections -------------------------------------------------------------------------------------


def _client_options(timeout_seconds: float) -> dict[str, Any]:
    # decode_responses: keys and JSON come back as str. One quick retry replaces a pooled connection a
    # Redis restart broke; more retries (redis-py's default backs off for seconds) would make a down
    # store answer far slower than the API's 503 should.
    return {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "health_check_interval": 30,
        "decode_responses": True,
    }


def connect_redis(url: str, *, timeout_seconds: float) -> redis.Redis:
    """A client for worker-side code whose calls fail within about ``timeout_seconds``."""
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1)
    return redis.Redis.from_url(url, retry=retry, **_client_options(timeout_seconds))


def connect_async_redis(url: str, *, timeout_seconds: float) -> redis.asyncio.Redis:
    """The asyncio twin of :func:`connect_redis`, for the FastAPI app."""
    retry = AsyncRetry(ExponentialBackoff(cap=0.2, base=0.05), retries=1)
    return redis.asyncio.Redis.from_url(url, retry=retry, **_client_options(timeout_seconds))


@contextmanager
def redis_errors_as_unavailable(client: redis.Redis | redis.asyncio.Redis) -> Iterator[None]:
    """Turn connection failures and timeouts of ``client`` into :class:`StoreUnavailableError`.

    The message names host, port and db but never the URL, which may carry a password.
    """
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        kwargs = client.connection_pool.connection_kwargs
        where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        raise StoreUnavailableError(f"Redis at {where} unavailable: {type(exc).__name__}: {exc}") from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: str | bytes | None) -> JobStatus | None:
    return None if raw is None else JobStatus.model_validate_json(raw)


def _check_block(client: redis.Redis | redis.asyncio.Redis, block_ms: int | None) -> None:
    # A blocking read longer than the socket timeout would surface as a bogus "store unavailable".
    socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if block_ms is not None and (block_ms <= 0 or (socket_timeout and block_ms >= socket_timeout * 1000)):
        raise ValueError(f"block_ms must be > 0 and below the socket timeout ({socket_timeout} s)")


# -- keys and writes shared by both stores -----------------------------------------------------------


@dataclass(frozen=True)
class JobKeys:
    """Names of the Redis keys of one namespace."""

    namespace: str = "ef"

    def job(self, task_id: str) -> str:
        return f"{self.namespace}:job:{task_id}"

    def events(self, task_id: str) -> str:
        return f"{self.namespace}:job:{task_id}:events"

    def cancel(self, task_id: str) -> str:
        return f"{self.namespace}:job:{task_id}:cancel"

    def meter_slot(self, meter_type: str, meter_id: str) -> str:
        return f"{self.namespace}:meter-job:{meter_type}:{meter_id}"

    def meter_lease(self, meter_type: str, meter_id: str) -> str:
        """Held by the run that is training the meter (see :mod:`service.meter_lease`)."""
        return f"{self.namespace}:meter-lease:{meter_type}:{meter_id}"


#: create_pending in one round trip (the API's hot path): the same task id queued twice returns its
#: status; a meter whose slot holds an unfinished job returns that job; otherwise the fresh PENDING
#: status is written and the slot claimed. KEYS: job, meter slot, events. ARGV: fresh status JSON, task id, ttl, events maxlen, job key prefix,
#: then the finished states.
_CLAIM_SCRIPT = """
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local holder_id = redis.call('GET', KEYS[2])
if holder_id then
  local holder = redis.call('GET', ARGV[5] .. holder_id)
  if holder then
    local state = cjson.decode(holder)['status']
    local finished = false
    for i = 6, #ARGV do if ARGV[i] == state then finished = true end end
    if not finished then return {0, holder} end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'status', ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return {1, ARGV[1]}
"""


def _claim_call(keys: JobKeys, ttl_seconds: int, fresh: JobStatus) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of :data:`_CLAIM_SCRIPT` for queuing ``fresh``."""
    script_keys = [
        keys.job(fresh.task_id),
        keys.meter_slot(fresh.meter_type, fresh.meter_id),
        keys.events(fresh.task_id),
    ]
    finished = sorted(state.value for state in FINISHED_STATES)
    args: list[str | int] = [
        fresh.model_dump_json(),
        fresh.task_id,
        ttl_seconds,
        EVENTS_MAXLEN,
        keys.job(""),
        *finished,
    ]
    return script_keys, args


def _claim_result(reply: list[Any]) -> tuple[JobStatus, bool]:
    created, body = reply
    status = _decode(body)
    assert status is not None
    return status, bool(created)


def _queue_write(
    pipe: Any, keys: JobKeys, ttl_seconds: int, status: JobStatus, *, claim_slot: bool, release_slot: bool
) -> None:
    """Buffer the writes for ``status`` on a pipeline in MULTI mode (sync and asyncio alike)."""
    task_id = status.task_id
    body = status.model_dump_json()
    pipe.set(keys.job(task_id), body, ex=ttl_seconds)
    pipe.xadd(keys.events(task_id), {"status": body}, maxlen=EVENTS_MAXLEN, approximate=True)
    pipe.expire(keys.events(task_id), ttl_seconds)
    slot = keys.meter_slot(status.meter_type, status.meter_id)
    if claim_slot:
        pipe.set(slot, task_id, ex=ttl_seconds)
    if release_slot:
        pipe.delete(slot)
    if status.status is JobState.CANCELLED:
        pipe.set(keys.cancel(task_id), "1", ex=ttl_seconds)


def _events_from(reply: Any) -> list[tuple[str, JobStatus]]:
    if not reply:
        return []
    _stream, entries = reply[0]
    return [
        (_text(entry_id) or "", JobStatus.model_validate_json(fields.get("status") or fields[b"status"]))
        for entry_id, fields in entries
    ]


# -- stores ------------------------------------------------------------------------------------------

Decide = Callable[[JobStatus], JobStatus | None]


class JobStore:
    """Synchronous store, used by the worker (and by tests and the CLI)."""

    def __init__(self, redis: redis.Redis, *, ttl_seconds: int, namespace: str = "ef") -> None:
        self._redis, self._ttl, self.keys = redis, ttl_seconds, JobKeys(namespace)
        self._claim = redis.register_script(_CLAIM_SCRIPT)

    @property
    def redis(self) -> redis.Redis:
        """The client, for callers that share the connection pool (worker registration)."""
        return self._redis

    def create_pending(self, task_id: str, meter_id: str, meter_type: str) -> tuple[JobStatus, bool]:
        """Queue a job unless one is active for this meter: ``(status, created)``."""
        fresh = pending_status(task_id, meter_id, meter_type, now=_now())
        script_keys, args = _claim_call(self.keys, self._ttl, fresh)
        with redis_errors_as_unavailable(self._redis):
            return _claim_result(self._claim(keys=script_keys, args=args))

    def update(
        self,
        task_id: str,
        state: JobState,
        *,
        message: str,
        progress: int | None = None,
        attempt: int | None = None,
        estimated_completion: datetime | None = None,
    ) -> JobStatus | None:
        """Record progress; returns the stored status (unchanged if finished), None if unknown."""
        report = _progressor(state, message, progress, attempt, estimated_completion)
        return self._change(task_id, report)[0]

    def succeed(self, task_id: str, result: dict[str, Any], message: str) -> JobStatus | None:
        decide = _finisher(JobState.SUCCESS, message, result=result)
        return self._change(task_id, decide)[0]

    def fail(self, task_id: str, error_type: str, message: str) -> JobStatus | None:
        decide = _finisher(JobState.FAILED, message, error=JobError(type=error_type, message=message))
        return self._change(task_id, decide)[0]

    def cancel(self, task_id: str) -> JobStatus:
        """Cancel and flag the worker; raises JobNotFoundError or JobAlreadyFinishedError."""
        return _cancel_outcome(
            task_id, *self._change(task_id, _finisher(JobState.CANCELLED, CANCELLED_MESSAGE))
        )

    def is_cancel_requested(self, task_id: str) -> bool:
        with redis_errors_as_unavailable(self._redis):
            return bool(self._redis.exists(self.keys.cancel(task_id)))

    def get(self, task_id: str) -> JobStatus | None:
        with redis_errors_as_unavailable(self._redis):
            return _decode(self._redis.get(self.keys.job(task_id)))

    def events(
        self, task_id: str, last_id: str = "0", *, block_ms: int | None = None
    ) -> list[tuple[str, JobStatus]]:
        """Changes after stream id ``last_id``, waiting up to ``block_ms`` for the first one."""
        _check_block(self._redis, block_ms)
        with redis_errors_as_unavailable(self._redis):
            reply = self._redis.xread({self.keys.events(task_id): last_id}, block=block_ms)
        return _events_from(reply)

    def _change(self, task_id: str, decide: Decide) -> tuple[JobStatus | None, bool]:
        job_key = self.keys.job(task_id)

        def apply(pipe: Any) -> tuple[JobStatus | None, bool]:
            previous = _decode(pipe.get(job_key))
            status = decide(previous) if previous is not None else None
            if status is None:
                return previous, False
            release = False
            if status.finished:  # free the meter's slot, unless a newer job already holds it
                slot = self.keys.meter_slot(status.meter_type, status.meter_id)
                pipe.watch(slot)
                release = _text(pipe.get(slot)) == task_id
            pipe.multi()
            _queue_write(pipe, self.keys, self._ttl, status, claim_slot=False, release_slot=release)
            return status, True

        with redis_errors_as_unavailable(self._redis):
            return self._redis.transaction(apply, job_key, value_from_callable=True)


class AsyncJobStore:
    """The :class:`JobStore` API on redis.asyncio, for the FastAPI app; same rules, same keys."""

    def __init__(self, redis: redis.asyncio.Redis, *, ttl_seconds: int, namespace: str = "ef") -> None:
        self._redis, self._ttl, self.keys = redis, ttl_seconds, JobKeys(namespace)
        self._claim = redis.register_script(_CLAIM_SCRIPT)

    async def create_pending(self, task_id: str, meter_id: str, meter_type: str) -> tuple[JobStatus, bool]:
        fresh = pending_status(task_id, meter_id, meter_type, now=_now())
        script_keys, args = _claim_call(self.keys, self._ttl, fresh)
        with redis_errors_as_unavailable(self._redis):
            return _claim_result(await self._claim(keys=script_keys, args=args))

    async def update(
        self,
        task_id: str,
        state: JobState,
        *,
        message: str,
        progress: int | None = None,
        attempt: int | None = None,
        estimated_completion: datetime | None = None,
    ) -> JobStatus | None:
        report = _progressor(state, message, progress, attempt, estimated_completion)
        return (await self._change(task_id, report))[0]

    async def succeed(self, task_id: str, result: dict[str, Any], message: str) -> JobStatus | None:
        return (await self._change(task_id, _finisher(JobState.SUCCESS, message, result=result)))[0]

    async def fail(self, task_id: str, error_type: str, message: str) -> JobStatus | None:
        error = JobError(type=error_type, message=message)
        return (await self._change(task_id, _finisher(JobState.FAILED, message, error=error)))[0]

    async def cancel(self, task_id: str) -> JobStatus:
        changed = await self._change(task_id, _finisher(JobState.CANCELLED, CANCELLED_MESSAGE))
        return _cancel_outcome(task_id, *changed)

    async def is_cancel_requested(self, task_id: str) -> bool:
        with redis_errors_as_unavailable(self._redis):
            return bool(await self._redis.exists(self.keys.cancel(task_id)))

    async def get(self, task_id: str) -> JobStatus | None:
        return _decode(await self.get_json(task_id))

    async def get_json(self, task_id: str) -> str | None:
        """The status exactly as stored: the JSON of :class:`JobStatus`, written by ``model_dump_json``.

        The status route serves them as they are: parsing them into a model only for FastAPI to
        validate and serialise it again is work on the API's busiest read (benchmarks/RESULTS.md).
        """
        with redis_errors_as_unavailable(self._redis):
            return _text(await self._redis.get(self.keys.job(task_id)))

    async def events(
        self, task_id: str, last_id: str = "0", *, block_ms: int | None = None
    ) -> list[tuple[str, JobStatus]]:
        _check_block(self._redis, block_ms)
        with redis_errors_as_unavailable(self._redis):
            reply = await self._redis.xread({self.keys.events(task_id): last_id}, block=block_ms)
        return _events_from(reply)

    async def _change(self, task_id: str, decide: Decide) -> tuple[JobStatus | None, bool]:
        job_key = self.keys.job(task_id)

        async def apply(pipe: Any) -> tuple[JobStatus | None, bool]:
            previous = _decode(await pipe.get(job_key))
            status = decide(previous) if previous is not None else None
            if status is None:
                return previous, False
            release = False
            if status.finished:  # free the meter's slot, unless a newer job already holds it
                slot = self.keys.meter_slot(status.meter_type, status.meter_id)
                await pipe.watch(slot)
                release = _text(await pipe.get(slot)) == task_id
            pipe.multi()
            _queue_write(pipe, self.keys, self._ttl, status, claim_slot=False, release_slot=release)
            return status, True

        with redis_errors_as_unavailable(self._redis):
            return await self._redis.transaction(apply, job_key, value_from_callable=True)


def _progressor(
    state: JobState, message: str, progress: int | None, attempt: int | None, eta: datetime | None
) -> Decide:
    return lambda previous: progressed_status(
        previous,
        state,
        message=message,
        now=_now(),
        progress=progress,
        attempt=attempt,
        estimated_completion=eta,
    )


def _finisher(state: JobState, message: str, **fields: Any) -> Decide:
    return lambda previous: finished_status(previous, state, message=message, now=_now(), **fields)


def _cancel_outcome(task_id: str, status: JobStatus | None, changed: bool) -> JobStatus:
    if status is None:
        raise JobNotFoundError(task_id)
    if not changed:
        raise JobAlreadyFinishedError(status)
    return status
