"""What the fault tests share: private servers they may break, a stack on them, and ways to look inside.

Every fault module runs its own stack (API + dramatiq_worker.py) on its *own* Redis (and, for the
InfluxDB outage, its own influxd), so stopping a server never disturbs tests that share the session
fixtures. Training budgets are tiny; heartbeats and queue maintenance are fast so redelivery after a
worker dies takes seconds, not the production minute.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import redis

from config.settings import InfluxSettings
from forecasting.importer import import_meter_csv
from forecasting.registry import STAGING_PREFIX, TRASH_PREFIX
from service.worker_health import worker_registry_key
from tests.integration.stack import PROJECT_DIR, Stack, stack_environment, wait_for
from tests.service_processes import InfluxServer, RedisServer

REAL_METER = PROJECT_DIR / "data" / "meters" / "electricity__pjm_ekpc.csv"
HISTORY_DAYS = 100  # enough for MAX_TRAIN_DAYS=60 and two backtest weeks; small enough to fetch fast
FINISHED = ("SUCCESS", "FAILED", "CANCELLED")

#: Settings every fault stack shares: a dead worker is noticed after 5 s and maintenance (which
#: requeues a dead worker's messages) runs on every broker call instead of 2 % of them.
FAST_FAULT_ENV = {
    "TRAINING__MAX_TRIALS": "1",
    "TRAINING__EPOCHS": "3",
    "TRAINING__MAX_TRAIN_DAYS": "60",
    "TRAINING__BACKTEST_WEEKS": "2",
    "WORKER__HEARTBEAT_TIMEOUT_SECONDS": "5",
    "WORKER__MAINTENANCE_CHANCE": "1000000",
    "WORKER__METRICS_PORT": "0",
    "REDIS_TIMEOUT_SECONDS": "1",
}


class PersistentRedisServer(RedisServer):
    """A ``redis-server`` with an fsync'ed append-only file, as production must run it.

    Queued jobs survive a Redis restart only if Redis persists them; the plain test server does not.
    """

    def _command(self, executable: str) -> list[str]:
        return [*super()._command(executable), "--appendonly", "yes", "--appendfsync", "always"]


class FreezableInfluxServer(InfluxServer):
    """An influxd that can be frozen (SIGSTOP): it accepts connections but never answers, like a hung server."""

    def freeze(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)


def import_meter(influx: InfluxSettings, meter_id: str, workdir: Path) -> None:
    """Store the last HISTORY_DAYS of the real meter under ``meter_id``."""
    csv = workdir / f"electricity__{meter_id}.csv"
    if not csv.exists():
        pd.read_csv(REAL_METER).tail(24 * HISTORY_DAYS).to_csv(csv, index=False)
    import_meter_csv(csv, influx, meter_id=meter_id, meter_type="electricity")


@contextmanager
def fault_stack(
    *,
    redis_server: RedisServer,
    influx_server: InfluxServer,
    workdir: Path,
    meters: tuple[str, ...],
    extra: dict[str, str] | None = None,
) -> Iterator[Stack]:
    database = f"faults_{uuid.uuid4().hex[:10]}"
    influx = InfluxSettings(url=influx_server.url, database=database, timeout_seconds=10)
    for meter_id in meters:
        import_meter(influx, meter_id, workdir)
    env = stack_environment(
        redis_url=redis_server.url,
        influx_url=influx_server.url,
        database=database,
        workdir=workdir,
        extra={**FAST_FAULT_ENV, **(extra or {})},
    )
    stack = Stack(env, workdir)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# -- looking inside ----------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Running (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def live_worker_pids(redis_url: str) -> list[int]:
    """Pids of registered worker processes that are still running on this host."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        described = client.hvals(worker_registry_key())
    finally:
        client.close()
    pids = [int(text.split()[1]) for text in described if text.startswith("pid ")]
    return sorted(pid for pid in pids if process_alive(pid))


def the_worker_pid(stack: Stack, *, timeout: float = 60) -> int:
    """The pid of the one live worker process (single-worker stacks)."""
    url = stack.env["REDIS_URL"]
    pids = wait_for(lambda: live_worker_pids(url), timeout=timeout, interval=0.1, what="a live worker pid")
    assert len(pids) == 1, f"expected one live worker, found {pids}"
    return pids[0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def status(stack: Stack, task_id: str) -> dict[str, Any]:
    reply = stack.client.get(f"/trainmodel/status/{task_id}")
    assert reply.status_code == 200, reply.text
    return reply.json()


def wait_for_status(stack: Stack, task_id: str, wanted: str, *, timeout: float = 60) -> dict[str, Any]:
    """Poll until the job shows ``wanted``; fail early if it finishes in another state."""

    def reached() -> dict[str, Any] | None:
        body = status(stack, task_id)
        if body["status"] == wanted:
            return body
        if body["status"] in FINISHED:
            raise AssertionError(f"job finished as {body} while waiting for {wanted}")
        return None

    return wait_for(reached, timeout=timeout, interval=0.05, what=f"{task_id} to reach {wanted}")


def submit(stack: Stack, meter_id: str) -> str:
    reply = stack.client.post("/trainmodel/", json={"meter_id": meter_id, "meter_type": "electricity"})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["task_id"])


def status_history(redis_url: str, task_id: str) -> list[dict[str, Any]]:
    """Every status the job's event stream recorded, oldest first (what an SSE client would see)."""
    import json

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = client.xrange(f"ef:job:{task_id}:events")
    finally:
        client.close()
    return [json.loads(fields["status"]) for _, fields in entries]


def leftover_files(models_dir: Path) -> list[Path]:
    """Staging or trash entries a crashed write left in the model store."""
    if not models_dir.exists():
        return []
    return [path for path in models_dir.rglob("*") if path.name.startswith((STAGING_PREFIX, TRASH_PREFIX))]


def tuner_dirs_of(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"ef-tuner-{pid}-*"))


def kill(pid: int) -> float:
    """SIGKILL ``pid``; returns the monotonic time of the kill."""
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


@contextmanager
def api_only(env: dict[str, str], workdir: Path, *, headers: dict[str, str] | None = None) -> Iterator[Stack]:
    """Just the API process (no worker) of a stack: enough for input, access and schema tests."""
    stack = Stack(env, workdir)
    stack.client.headers.update(headers or {})

    def answers() -> bool:
        try:
            return stack.client.get("/health/").status_code in (200, 503)
        except httpx.TransportError:
            return False

    stack.api.start()
    try:
        wait_for(answers, timeout=30, what="the API to answer")
        yield stack
    finally:
        stack.client.close()
        stack.api.stop()
