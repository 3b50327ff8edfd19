"""End-to-end dispatch of no-op jobs: this project's Dramatiq setup vs plain Dramatiq vs plain Celery.

Why: the service adds a broker configuration and per-message middleware (metrics) on top of
Dramatiq; this measures what that costs, next to the two obvious alternatives, on the same private
Redis in the same run. Target (issue 4): at least 50% of plain Dramatiq's jobs/s, and faster than
plain Celery.

Each system gets a worker subprocess with its framework's default concurrency for this machine
(Dramatiq CLI: one process per core, 8 threads each; Celery: prefork, one process per core), warmed
up with one job. Then a producer subprocess sends ``--jobs`` jobs through the ordinary send API
(``actor.send`` / ``task.delay``), and each job increments one Redis counter. Jobs/s is jobs divided
by the time from the first send to the counter reaching ``--jobs``. Systems run in alternating
rounds; the best round counts. (The service itself runs training workers with one thread per
process; that is a training choice, not a dispatch one.)

Run: ``.venv/bin/python benchmarks/queue_dispatch.py`` (``--help``); needs ``requirements-bench.txt``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.report import machine_description, verdict, write_section  # noqa: E402
from service.worker_metrics import WorkerMetricsExporter  # noqa: E402
from tests.integration.stack import ServiceProcess, wait_for  # noqa: E402
from tests.service_processes import RedisServer  # noqa: E402

DONE_KEY = "dispatch_bench:done"
CORES = os.cpu_count() or 1


@dataclass(frozen=True)
class System:
    name: str
    worker: list[str]
    producer: list[str]
    env: dict[str, str]


def systems(metrics_dir_env: dict[str, str]) -> list[System]:
    python = sys.executable
    dramatiq_worker = [python, "-m", "dramatiq", "benchmarks.dispatch_dramatiq", "--processes", str(CORES)]
    dramatiq_worker += ["--threads", "8", "--queues", "dispatch_bench"]
    celery_worker = [python, "-m", "celery", "-A", "benchmarks.dispatch_celery", "worker"]
    celery_worker += ["--concurrency", str(CORES), "--loglevel", "WARNING", "--queues", "dispatch_bench"]
    return [
        System(
            "project",
            dramatiq_worker,
            [python, "benchmarks/dispatch_dramatiq.py"],
            {"DISPATCH_FLAVOUR": "project", **metrics_dir_env},
        ),
        System(
            "dramatiq",
            dramatiq_worker,
            [python, "benchmarks/dispatch_dramatiq.py"],
            {"DISPATCH_FLAVOUR": "plain"},
        ),
        System("celery", celery_worker, [python, "benchmarks/dispatch_celery.py"], {}),
    ]


@dataclass
class Run:
    jobs_per_second: float
    send_per_second: float
    seconds: float


def produce(system: System, env: dict[str, str], jobs: int, store: redis.Redis, timeout: float) -> Run:
    """Send ``jobs`` jobs and wait until the counter says all ran."""
    store.set(DONE_KEY, 0)
    done = subprocess.run(
        [*system.producer, str(jobs)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("SENT "))
    started, sent = (float(value) for value in line.split()[1:3])
    wait_for(lambda: int(store.get(DONE_KEY) or 0) >= jobs, timeout=timeout, interval=0.005, what="all jobs")
    finished = time.time()
    return Run(jobs / (finished - started), jobs / (sent - started), finished - started)


def measure(system: System, redis_url: str, workdir: Path, jobs: int) -> Run:
    env = {**os.environ, **system.env, "REDIS_URL": redis_url, "LOG_DIR": str(workdir / "logs")}
    env["INFLUXDB_CONFIG_FILE"] = str(workdir / "none.json")
    store = redis.Redis.from_url(redis_url)
    store.flushdb()
    worker = ServiceProcess(system.name, system.worker, env, workdir / f"{system.name}.out")
    worker.start()
    try:
        produce(system, env, 1, store, timeout=60)  # warm-up: the worker is up and consuming
        return produce(system, env, jobs, store, timeout=600)
    finally:
        worker.stop()


def render(best: dict[str, Run], args: argparse.Namespace) -> str:
    project, dramatiq, celery = best["project"], best["dramatiq"], best["celery"]
    share = project.jobs_per_second / dramatiq.jobs_per_second
    faster = project.jobs_per_second / celery.jobs_per_second
    rows = "\n".join(
        f"| {name} | {run.jobs_per_second:,.0f} | {run.send_per_second:,.0f} | {run.seconds:.1f} |"
        for name, run in best.items()
    )
    return f"""Run with `.venv/bin/python benchmarks/queue_dispatch.py`: {args.jobs:,} no-op jobs per system (each
increments one Redis counter), best of {args.rounds} alternating rounds, one private redis-server.
Workers: Dramatiq CLI `--processes {CORES} --threads 8`; Celery prefork `--concurrency {CORES}`.
`project` = the service's broker (`dramatiq_broker.build_broker`) plus its per-message worker
middleware (Dramatiq Prometheus metrics in multiprocess mode, job-outcome metrics).
Machine: {machine_description()}.

| System | jobs/s end to end | sends/s | seconds |
|---|---:|---:|---:|
{rows}

- Project vs plain Dramatiq: {share:.0%} of its jobs/s (target >= 50%): {verdict(share >= 0.5)}.
- Project vs plain Celery: {faster:.1f}x its jobs/s (target > 1x): {verdict(faster > 1)}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="Print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    exporter = WorkerMetricsExporter("127.0.0.1", 0)  # the supervisor's metrics directory, no server
    metrics_env = {key: value for key, value in exporter.child_environment().items() if key not in os.environ}
    runs: dict[str, list[Run]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="dispatch-") as directory, RedisServer() as server:
            for number in range(args.rounds):
                for system in systems(metrics_env):
                    run = measure(system, server.url, Path(directory), args.jobs)
                    runs.setdefault(system.name, []).append(run)
                    print(
                        f"round {number + 1} {system.name:9}: {run.jobs_per_second:7,.0f} jobs/s end to end,"
                        f" {run.send_per_second:7,.0f} sends/s",
                        flush=True,
                    )
    finally:
        exporter.close()
    best = {name: max(results, key=lambda run: run.jobs_per_second) for name, results in runs.items()}
    section = render(best, args)
    print(section)
    if not args.no_write:
        write_section("Queue dispatch", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
