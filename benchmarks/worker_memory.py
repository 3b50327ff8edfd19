"""Resident memory of a training worker over 30 trainings in a row, with and without recycling.

Why this exists: a process that builds, trains and discards Keras models grows a few MB per job, and
the workers run for weeks. ``WORKER__MAX_JOBS_PER_PROCESS`` makes a worker process hand over to a
fresh one after N jobs (``dramatiq_worker.py`` restarts it; TensorFlow is imported once per process,
at boot, not per job). This measures what that buys on the real stack: private Redis and InfluxDB,
the API and ``dramatiq_worker.py`` processes, the real ``pjm_ekpc`` meter, a small training budget.

For each job it records the pid of the worker process that ran it and that process's RSS (VmRSS)
when the job finished. The target: the process that runs job 30 is within 15 % of the RSS the
worker had after job 3.

Run: ``.venv/bin/python benchmarks/worker_memory.py`` (``--jobs``, ``--recycle-after``); takes about
10 minutes on 2 cores. It replaces the "Worker memory" section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.report import machine_description, verdict, write_section  # noqa: E402
from config.settings import InfluxSettings  # noqa: E402
from forecasting.importer import import_meter_csv  # noqa: E402
from tests.integration.stack import Stack, stack_environment, wait_for  # noqa: E402
from tests.service_processes import InfluxServer, RedisServer  # noqa: E402

METER_CSV = PROJECT_ROOT / "data" / "meters" / "electricity__pjm_ekpc.csv"
TARGET_GROWTH = 0.15
BUDGET = {
    "TRAINING__MAX_TRIALS": "1",
    "TRAINING__EPOCHS": "3",
    "TRAINING__MAX_TRAIN_DAYS": "60",
    "TRAINING__BACKTEST_WEEKS": "2",
    "WORKER__METRICS_PORT": "0",
}


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _worker_pid(stack: Stack) -> int:
    import redis

    client = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)

    def live() -> int | None:
        pids = [int(text.split()[1]) for text in client.hvals("dramatiq:__training_workers__")]
        alive = [pid for pid in pids if _rss_mib(pid) is not None]
        return alive[0] if len(alive) == 1 else None

    try:
        return wait_for(live, timeout=120, interval=0.2, what="one live worker")
    finally:
        client.close()


def run_scenario(
    jobs: int,
    recycle_after: int | None,
    redis_server: RedisServer,
    influx: InfluxSettings,
    *,
    budget: Mapping[str, str] = BUDGET,
    workdir: Path | None = None,
) -> list[tuple[int, float]]:
    """(pid, RSS MiB at the end of the job) for each of ``jobs`` trainings in a row.

    ``recycle_after`` None keeps the service's default ``WORKER__MAX_JOBS_PER_PROCESS``. The test
    suite runs this too (``tests/integration/test_worker_memory.py``), with a smaller budget.
    """
    workdir = workdir or Path(tempfile.mkdtemp(prefix="worker-memory-"))
    recycling = {} if recycle_after is None else {"WORKER__MAX_JOBS_PER_PROCESS": str(recycle_after)}
    env = stack_environment(
        redis_url=redis_server.url,
        influx_url=influx.url,
        database=influx.database,
        workdir=workdir,
        extra={**budget, **recycling},
    )
    stack = Stack(env, workdir)
    stack.start()
    samples: list[tuple[int, float]] = []
    try:
        for number in range(1, jobs + 1):
            _worker_pid(stack)  # a worker is up (after a recycle, the new one)
            reply = stack.client.post(
                "/trainmodel/", json={"meter_id": "pjm_ekpc", "meter_type": "electricity"}
            )
            task_id = reply.json()["task_id"]
            pid, last_rss = 0, 0.0
            while True:
                body = stack.client.get(f"/trainmodel/status/{task_id}").json()
                if not pid and body["status"] in ("TRAINING_MODEL", "SAVING_MODEL", "SUCCESS"):
                    pid = _worker_pid(stack)  # the process running this job
                rss = _rss_mib(pid) if pid else None
                last_rss = rss if rss is not None else last_rss
                if body["status"] in ("SUCCESS", "FAILED", "CANCELLED"):
                    break
                time.sleep(0.1)
            if body["status"] != "SUCCESS":
                raise RuntimeError(f"job {number} ended {body}")
            samples.append((pid, last_rss))
            print(
                f"  recycle after {recycle_after or 'default':>7}: job {number:>2}  pid {pid:>7}  RSS {last_rss:7.1f} MiB",
                flush=True,
            )
    finally:
        stack.stop()
    return samples


def _summary(name: str, samples: list[tuple[int, float]]) -> tuple[str, bool]:
    after_three, last = samples[2][1], samples[-1][1]
    growth = (last - after_three) / after_three
    first_pid_jobs = [rss for pid, rss in samples if pid == samples[0][0]]
    per_job = (
        (first_pid_jobs[-1] - first_pid_jobs[2]) / max(1, len(first_pid_jobs) - 3)
        if len(first_pid_jobs) > 3
        else 0.0
    )
    ok = growth <= TARGET_GROWTH
    processes = len(dict.fromkeys(pid for pid, _ in samples))
    row = (
        f"| {name} | {processes} | {samples[0][1]:.0f} | {after_three:.0f} | {last:.0f} | "
        f"{growth * 100:+.1f} % | {per_job:+.1f} | {verdict(ok)} |"
    )
    return row, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--recycle-after", type=int, default=20, help="WORKER__MAX_JOBS_PER_PROCESS to test")
    args = parser.parse_args()

    machine = machine_description()
    with RedisServer() as redis_server, InfluxServer() as influx_server:
        influx = InfluxSettings(
            url=influx_server.url, database=f"mem_{uuid.uuid4().hex[:8]}", timeout_seconds=30
        )
        import_meter_csv(METER_CSV, influx, meter_id="pjm_ekpc", meter_type="electricity")
        results = {}
        for name, recycle_after in (
            ("no recycling", 10_000),
            (f"recycle after {args.recycle_after}", args.recycle_after),
        ):
            print(f"{name}:", flush=True)
            results[name] = run_scenario(args.jobs, recycle_after, redis_server, influx)

    rows = [_summary(name, samples) for name, samples in results.items()]
    table = "\n".join(
        [
            "| Scenario | Worker processes | RSS after job 1 (MiB) | after job 3 | after last job "
            "| Growth from job 3 | MiB per job (first process, after job 3) | Within 15 % |",
            "|---|---|---|---|---|---|---|---|",
            *(row for row, _ in rows),
        ]
    )
    per_job = "\n".join(
        f"- {name}: " + ", ".join(f"{rss:.0f}" for _, rss in samples) for name, samples in results.items()
    )
    section = f"""
`benchmarks/worker_memory.py`: {args.jobs} trainings of the real `pjm_ekpc` meter in a row through the real
API and `dramatiq_worker.py` (one worker process; budget: 1 trial, 3 epochs, 60 days). RSS (VmRSS) of the
worker process that ran each job, read when the job finished. Machine: {machine}.

{table}

RSS per job (MiB), in order:

{per_job}

Why recycling: one process grows linearly with the number of Keras models it has built (TensorFlow keeps
per-graph state that `clear_session()` does not give back), and Dramatiq has no max-tasks-per-child. A
worker process therefore stops taking messages after `WORKER__MAX_JOBS_PER_PROCESS` jobs, finishes
gracefully, and `dramatiq_worker.py` starts a fresh one; TensorFlow is imported once per process at boot
(about 3-5 s), so the import is paid once per N jobs, not per job.
"""
    write_section("Worker memory", section)
    print(table)
    return 0 if all(ok for _, ok in rows[1:]) else 1


if __name__ == "__main__":
    sys.exit(main())
