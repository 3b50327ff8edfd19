"""Start-up: how long until the API answers ``/health/`` and until a fresh worker takes its first job.

Why: a deploy, a crash restart or a worker recycle (every ``max_jobs_per_process`` jobs) waits this
long. Targets (issue 4): API under 2 s (it must not import TensorFlow), worker ready under 10 s.
References measured in the same run: the bare FastAPI app of ``api_load.py`` under the same uvicorn
command line, and a plain Dramatiq worker with a no-op actor.

API: from ``Popen`` of ``uvicorn main_dramatiq:app`` to the first answer of ``GET /health/`` (any
status: InfluxDB is deliberately absent). Worker: a training job is queued first; then from
``Popen`` of ``python dramatiq_worker.py`` to the job's status leaving PENDING (the worker took it).
Each is measured ``--repeat`` times; the median counts.

Run: ``.venv/bin/python benchmarks/startup.py`` (``--help``); about a minute.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.report import machine_description, verdict, write_section  # noqa: E402
from service.job_store import JobStore, connect_redis  # noqa: E402
from tests.integration.stack import ServiceProcess, wait_for  # noqa: E402
from tests.service_processes import RedisServer, find_free_port  # noqa: E402


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError:
        return False
    return True


def api_start_seconds(app: str, path: str, env: dict[str, str], workdir: Path) -> float:
    port = find_free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    server = ServiceProcess(app, command, env, workdir / "api.out")
    started = time.perf_counter()
    server.start()
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}{path}"), timeout=60, interval=0.01, what=app)
        return time.perf_counter() - started
    finally:
        server.stop()


def worker_start_seconds(env: dict[str, str], workdir: Path) -> float:
    """Queue a training job through the API's own code path, then time a fresh worker taking it."""
    client = connect_redis(env["REDIS_URL"], timeout_seconds=2)
    client.flushdb()
    store = JobStore(client, ttl_seconds=3600)
    sender = subprocess.run(
        [sys.executable, "-c", _QUEUE_ONE_JOB],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    task_id = sender.stdout.split()[-1]
    worker = ServiceProcess("worker", [sys.executable, "dramatiq_worker.py"], env, workdir / "worker.out")
    started = time.perf_counter()
    worker.start()
    try:
        wait_for(lambda: store.get(task_id).status != "PENDING", timeout=120, interval=0.01, what="pick-up")  # type: ignore[union-attr]
        return time.perf_counter() - started
    finally:
        worker.stop()


def plain_worker_start_seconds(env: dict[str, str], workdir: Path) -> float:
    client = redis.Redis.from_url(env["REDIS_URL"])
    client.flushdb()
    plain = {**env, "DISPATCH_FLAVOUR": "plain"}
    subprocess.run(
        [sys.executable, "benchmarks/dispatch_dramatiq.py", "1"], cwd=PROJECT_ROOT, env=plain, check=True
    )
    command = [sys.executable, "-m", "dramatiq", "benchmarks.dispatch_dramatiq", "--processes", "1"]
    command += ["--threads", "1", "--queues", "dispatch_bench"]
    worker = ServiceProcess("plain-worker", command, plain, workdir / "plain-worker.out")
    started = time.perf_counter()
    worker.start()
    try:
        wait_for(lambda: client.get("dispatch_bench:done"), timeout=60, interval=0.01, what="plain pick-up")
        return time.perf_counter() - started
    finally:
        worker.stop()


_QUEUE_ONE_JOB = """
import dramatiq_broker
from api.dependencies import job_store
from api.training_queue import training_message
message = training_message("startup_meter", "electricity", queue="training")
job_store().create_pending(message.message_id, "startup_meter", "electricity")
dramatiq_broker.broker.enqueue(message)
print(message.message_id)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="Print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    figures: dict[str, list[float]] = {"api": [], "bare": [], "worker": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="startup-") as directory, RedisServer() as server:
        workdir = Path(directory)
        env = {
            **os.environ,
            "REDIS_URL": server.url,
            "LOG_DIR": str(workdir / "logs"),
            "MODELS_DIR": str(workdir / "models"),
            "INFLUXDB_CONFIG_FILE": str(workdir / "none.json"),
            "INFLUXDB__URL": f"http://127.0.0.1:{find_free_port()}",  # nobody listens: jobs fail fast
            "WORKER__METRICS_PORT": "0",
        }
        for number in range(args.repeat):
            figures["bare"].append(api_start_seconds("benchmarks.bare_api:app", "/docs", env, workdir))
            figures["api"].append(api_start_seconds("main_dramatiq:app", "/health/", env, workdir))
            figures["plain"].append(plain_worker_start_seconds(env, workdir))
            figures["worker"].append(worker_start_seconds(env, workdir))
            print(
                f"round {number + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in figures.items()),
                flush=True,
            )
    api, bare, worker, plain = (statistics.median(figures[key]) for key in ("api", "bare", "worker", "plain"))
    section = f"""Run with `.venv/bin/python benchmarks/startup.py`: median of {args.repeat}, from process start.
Machine: {machine_description()}.

| Process | ready after (s) | reference (s) | ratio |
|---|---:|---:|---:|
| API (`uvicorn main_dramatiq:app`) answers `GET /health/` | {api:.2f} | bare FastAPI app: {bare:.2f} | {api / bare:.1f}x |
| Worker (`dramatiq_worker.py`) takes its first queued job | {worker:.2f} | plain Dramatiq, no-op actor: {plain:.2f} | {worker / plain:.1f}x |

- API start-up {api:.2f} s (target < 2 s): {verdict(api < 2)}. Importing the API loads no TensorFlow
  (`tests/test_api_startup.py` checks it).
- Worker ready {worker:.2f} s (target < 10 s): {verdict(worker < 10)}. Most of the difference to plain
  Dramatiq is TensorFlow, imported and configured at worker boot so that the first job does not pay it.
"""
    print(section)
    if not args.no_write:
        write_section("Start-up", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
