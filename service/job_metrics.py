"""Fleet-wide counts of finished training jobs, their durations and stage times, kept in Redis.

Why Redis rather than each process's own Prometheus registry: jobs finish in worker processes that
come and go (each recycles after ``max_jobs_per_process`` jobs) and may run on other hosts, while
operators want one answer to "how many jobs failed, and why" from one scrape of the API. Counters
kept in Redis survive worker restarts, need no service discovery and cost one pipelined write per
finished job. The API's ``/metrics`` reads them at scrape time (:func:`read_job_metrics`).

Layout under ``<namespace>:metrics:``: ``jobs_finished`` (hash ``STATE|ERROR_TYPE`` → count),
``job_seconds`` (hash ``STATE|le`` → cumulative bucket count, ``STATE|count``, ``STATE|sum``) and
``stage_seconds`` (hash ``STAGE|sum`` / ``STAGE|count``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis

from service.job_store import redis_errors_as_unavailable

#: Upper bounds (seconds) of the job duration histogram; ``+Inf`` is implied.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


@dataclass(frozen=True)
class JobMetricsKeys:
    namespace: str = "ef"

    @property
    def finished(self) -> str:
        return f"{self.namespace}:metrics:jobs_finished"

    @property
    def durations(self) -> str:
        return f"{self.namespace}:metrics:job_seconds"

    @property
    def stages(self) -> str:
        return f"{self.namespace}:metrics:stage_seconds"


@dataclass
class DurationHistogram:
    """Cumulative bucket counts ``(upper bound, count)`` ending with ``+Inf``, and the sum."""

    buckets: list[tuple[float, int]]
    total_seconds: float


@dataclass
class JobMetrics:
    finished: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, error_type) → count
    durations: dict[str, DurationHistogram] = field(default_factory=dict)  # state → histogram
    stage_seconds: dict[str, tuple[float, int]] = field(default_factory=dict)  # stage → (sum, count)


def record_finished_job(
    client: redis.Redis,
    state: str,
    *,
    error_type: str = "",
    seconds: float | None = None,
    stage_seconds: Mapping[str, float] | None = None,
    namespace: str = "ef",
) -> None:
    """Count one job that reached ``state``; ``seconds`` feeds the duration histogram."""
    keys = JobMetricsKeys(namespace)
    pipe = client.pipeline(transaction=True)
    pipe.hincrby(keys.finished, f"{state}|{error_type}", 1)
    if seconds is not None:
        for bound in (*DURATION_BUCKETS, math.inf):
            if seconds <= bound:
                pipe.hincrby(keys.durations, f"{state}|{_bound_text(bound)}", 1)
        pipe.hincrby(keys.durations, f"{state}|count", 1)
        pipe.hincrbyfloat(keys.durations, f"{state}|sum", seconds)
    for stage, stage_time in (stage_seconds or {}).items():
        pipe.hincrbyfloat(keys.stages, f"{stage}|sum", float(stage_time))
        pipe.hincrby(keys.stages, f"{stage}|count", 1)
    with redis_errors_as_unavailable(client):
        pipe.execute()


def read_job_metrics(client: redis.Redis, *, namespace: str = "ef") -> JobMetrics:
    """Everything :func:`record_finished_job` counted; raises StoreUnavailableError if Redis is down."""
    keys = JobMetricsKeys(namespace)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.finished)
    pipe.hgetall(keys.durations)
    pipe.hgetall(keys.stages)
    with redis_errors_as_unavailable(client):
        finished_raw, durations_raw, stages_raw = (_texts(reply) for reply in pipe.execute())
    metrics = JobMetrics()
    for name, count in finished_raw.items():
        state, _, error_type = name.partition("|")
        metrics.finished[(state, error_type)] = int(count)
    for state in {name.partition("|")[0] for name in durations_raw}:
        buckets = [
            (bound, int(durations_raw.get(f"{state}|{_bound_text(bound)}", 0)))
            for bound in (*DURATION_BUCKETS, math.inf)
        ]
        metrics.durations[state] = DurationHistogram(buckets, float(durations_raw.get(f"{state}|sum", 0)))
    for stage in {name.partition("|")[0] for name in stages_raw}:
        metrics.stage_seconds[stage] = (
            float(stages_raw.get(f"{stage}|sum", 0)),
            int(stages_raw.get(f"{stage}|count", 0)),
        )
    return metrics


def _bound_text(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else f"{bound:g}"


def _texts(reply: Mapping[str | bytes, str | bytes]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in reply.items()
    }
