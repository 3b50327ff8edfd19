"""``GET /metrics``: what the API did, and what the fleet is doing, in Prometheus text format.

Three sources meet here:

* This process's own metrics (default registry): HTTP requests by route template, method and
  status, their latencies, jobs queued and cancelled, plus prometheus_client's process metrics.
* Fleet-wide job outcomes the workers record in Redis (:mod:`service.job_metrics`): jobs finished
  by state and error type, job durations, seconds per training stage.
* Queue depth and live workers, read from Dramatiq's Redis keys at scrape time
  (:mod:`service.worker_health`), so they are never stale.

The two Redis-backed sources are read per scrape by a throw-away collector: a scrape while Redis is
down still answers, with ``training_store_up 0``. Workers serve Dramatiq's message metrics on their
own port (:mod:`service.worker_metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from api import dependencies
from config import Settings
from service.job_metrics import read_job_metrics
from service.job_store import StoreUnavailableError
from service.worker_health import read_worker_health

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

#: Route label of requests no route matched (scanners, typos): one series instead of one per path.
UNMATCHED_ROUTE = "<unmatched>"

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from request to the end of the response, by route template and method",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS_QUEUED = Counter("training_jobs_queued_total", "Training jobs this API process queued")
JOBS_DEDUPLICATED = Counter(
    "training_jobs_deduplicated_total", "Training requests answered with a job already queued for the meter"
)

router = APIRouter(tags=["health"])


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by the template of the route that served it.

    Pure ASGI rather than ``@app.middleware("http")``: it adds no task or body buffering per request,
    and it sees streamed responses (SSE) through to their last byte.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope["method"]
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)


class FleetCollector(Collector):
    """Reads job outcomes, queue depth and live workers from Redis when Prometheus scrapes."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._client, self._settings = client, settings

    def collect(self) -> Iterator[Metric]:
        queue = self._settings.worker.queue
        try:
            workers = read_worker_health(
                self._client,
                queue=queue,
                heartbeat_timeout_ms=self._settings.worker.heartbeat_timeout_seconds * 1000,
            )
            jobs = read_job_metrics(self._client)
        except StoreUnavailableError:
            yield GaugeMetricFamily("training_store_up", "1 if Redis answered this scrape", value=0)
            return
        yield GaugeMetricFamily("training_store_up", "1 if Redis answered this scrape", value=1)
        yield GaugeMetricFamily(
            "training_live_workers", "Worker processes with a fresh heartbeat", value=workers.live_workers
        )
        for name, text, value in (
            ("training_queue_depth", "Jobs waiting in the queue", workers.queue_depth),
            ("training_queue_delayed", "Jobs waiting to be retried after a backoff", workers.delayed_depth),
            ("training_dead_letters", "Messages that exhausted their retries", workers.dead_letters),
        ):
            family = GaugeMetricFamily(name, text, labels=["queue"])
            family.add_metric([queue], value)
            yield family

        finished = CounterMetricFamily(
            "training_jobs_finished",
            "Jobs finished, fleet-wide, by final state and error type",
            labels=["state", "error_type"],
        )
        for (state, error_type), count in sorted(jobs.finished.items()):
            finished.add_metric([state, error_type], count)
        yield finished
        durations = HistogramMetricFamily(
            "training_job_duration_seconds",
            "Worker time per finished job, fleet-wide, by final state",
            labels=["state"],
        )
        for state, histogram in sorted(jobs.durations.items()):
            buckets = [(_bound(bound), count) for bound, count in histogram.buckets]
            durations.add_metric([state], buckets, histogram.total_seconds)
        yield durations
        stage_seconds = CounterMetricFamily(
            "training_stage_seconds",
            "Seconds spent per stage by successful jobs, fleet-wide",
            labels=["stage"],
        )
        stage_jobs = CounterMetricFamily(
            "training_stage_jobs", "Successful jobs that timed each stage", labels=["stage"]
        )
        for stage, (seconds, count) in sorted(jobs.stage_seconds.items()):
            stage_seconds.add_metric([stage], seconds)
            stage_jobs.add_metric([stage], count)
        yield stage_seconds
        yield stage_jobs


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(
    settings: Annotated[Settings, Depends(dependencies.settings)],
    client: Annotated[redis.Redis, Depends(dependencies.redis_client)],
) -> Response:
    """Prometheus metrics of this API process and of the training fleet (text exposition format)."""
    fleet = CollectorRegistry(auto_describe=False)
    fleet.register(FleetCollector(client, settings))
    body = generate_latest(REGISTRY) + generate_latest(fleet)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
