"""Training cost: one meter-year at default settings, and fleet throughput with 1 and 2 worker processes.

Why: "how many meters per hour can this machine retrain" sizes a deployment, and the stage times
say where a job's time goes (fetch, clean, train = tuning and fitting, backtest, save).

1. **One year of hourly data**: the last 365 days of ``electricity__pjm_ekpc`` are imported into a
   private ``influxd``; a fresh process runs :func:`forecasting.training_job.run_training_job` with
   default settings against it. Reported: the job's wall time (TensorFlow already imported), its
   stage times, and the process's peak RSS (``wait4``), next to the RSS after importing TensorFlow.
2. **Fleet**: the four ``data/meters`` files, each imported under two meter ids (8 meters, full
   history up to the default ``max_train_days``), trained through the real stack (uvicorn API +
   ``dramatiq_worker.py``) with ``WORKER__PROCESSES`` 1, then 2. Meters per hour = 8 / time from the
   first POST to the last job finished. The 1-process run is the reference for the 2-process one.

Run: ``.venv/bin/python benchmarks/training.py`` (``--help``); several minutes at default settings.
``--quick`` uses the integration tests' tiny budget instead (a smoke test of the benchmark itself).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.report import machine_description, write_section  # noqa: E402
from config.settings import InfluxSettings  # noqa: E402
from forecasting.importer import import_meter_csv  # noqa: E402
from tests.integration.stack import Stack, stack_environment, wait_for  # noqa: E402
from tests.service_processes import InfluxServer, RedisServer  # noqa: E402

METERS_DIR = PROJECT_ROOT / "data" / "meters"
YEAR_METER = METERS_DIR / "electricity__pjm_ekpc.csv"
QUICK_BUDGET = {
    "TRAINING__MAX_TRIALS": "1",
    "TRAINING__EPOCHS": "4",
    "TRAINING__MAX_TRAIN_DAYS": "90",
    "TRAINING__BACKTEST_WEEKS": "2",
}

_ONE_JOB = """
import json, os, time
from pathlib import Path
def rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
from config import get_settings
from forecasting.training import configure_tensorflow
from forecasting.meter_history import open_meter_history
from forecasting.registry import ModelRegistry
from forecasting.training_job import JobProgress, run_training_job
class Quiet(JobProgress):
    def stage(self, stage, message): pass
    def training(self, fraction, message): pass
settings = get_settings()
configure_tensorflow(settings.worker.tensorflow_threads)
baseline = rss_mib()
started = time.perf_counter()
result = run_training_job("year_meter", "electricity", open_history=lambda: open_meter_history(settings.influxdb),
                          registry=ModelRegistry(settings.models_dir), settings=settings, progress=Quiet())
print("RESULT " + json.dumps({"seconds": time.perf_counter() - started, "baseline_mib": baseline,
      "stages": result["details"]["stage_seconds"], "points": result["details"]["data_points"]}))
"""


@dataclass
class YearJob:
    seconds: float
    peak_mib: float
    baseline_mib: float
    stages: dict[str, float]
    points: int


@dataclass
class FleetRun:
    processes: int
    seconds: float
    succeeded: int

    @property
    def meters_per_hour(self) -> float:
        return self.succeeded / self.seconds * 3600


def one_year_job(env: dict[str, str]) -> YearJob:
    child = subprocess.Popen(
        [sys.executable, "-c", _ONE_JOB], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise RuntimeError(f"the training job failed (status {status}):\n{output[-2000:]}")
    figures = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
    return YearJob(
        figures["seconds"],
        usage.ru_maxrss / 1024,
        figures["baseline_mib"],
        figures["stages"],
        figures["points"],
    )


def fleet_run(env: dict[str, str], workdir: Path, meters: list[tuple[str, str]], processes: int) -> FleetRun:
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    (workdir / f"fleet-{processes}").mkdir()
    stack = Stack({**env, "WORKER__PROCESSES": str(processes)}, workdir / f"fleet-{processes}")
    stack.start()
    try:
        if processes > 1:
            wait_for(
                lambda: stack.client.get("/health/worker").json().get("live_workers", 0) >= processes,
                timeout=120,
                interval=0.2,
                what=f"{processes} live workers",
            )
        started = time.perf_counter()
        task_ids = []
        for meter_id, meter_type in meters:
            reply = stack.client.post("/trainmodel/", json={"meter_id": meter_id, "meter_type": meter_type})
            reply.raise_for_status()
            task_ids.append(reply.json()["task_id"])
        finals = [stack.poll_until_finished(task_id, timeout=7200)[-1] for task_id in task_ids]
        seconds = time.perf_counter() - started
    finally:
        stack.stop()
    failed = [final for final in finals if final["status"] != "SUCCESS"]
    for final in failed:
        print(f"  {final['meter_id']}: {final['status']} {final.get('error')}", flush=True)
    return FleetRun(processes, seconds, len(finals) - len(failed))


def render(year: YearJob, fleet: list[FleetRun], args: argparse.Namespace) -> str:
    total = sum(year.stages.values())
    stages = ", ".join(
        f"{name} {seconds:.1f} s ({seconds / total:.0%})" for name, seconds in year.stages.items()
    )
    rows = "\n".join(
        f"| {run.processes} | {run.succeeded} | {run.seconds / 60:.1f} | {run.meters_per_hour:.0f} |"
        for run in fleet
    )
    scaling = fleet[-1].meters_per_hour / fleet[0].meters_per_hour if len(fleet) > 1 else 1.0
    budget = "the tests' tiny budget (--quick)" if args.quick else "default training settings"
    return f"""Run with `.venv/bin/python benchmarks/training.py{" --quick" if args.quick else ""}`, {budget}.
Machine: {machine_description()}.

One year of hourly data (last 365 days of `electricity__pjm_ekpc`, {year.points:,} readings) in a fresh process:

- Job wall time {year.seconds:.1f} s (TensorFlow already imported); stages: {stages}.
- Peak RSS {year.peak_mib:,.0f} MiB (after importing and configuring TensorFlow: {year.baseline_mib:,.0f} MiB).

Fleet: 8 meters (4 `data/meters` files x 2 meter ids, full history) through API + `dramatiq_worker.py`:

| worker processes | jobs succeeded | minutes | meters/hour |
|---:|---:|---:|---:|
{rows}

- 2 processes vs 1: {scaling:.2f}x the meters/hour on {os.cpu_count()} cores (each process's TensorFlow gets its share of the cores, `WORKER__TF_THREADS=0`).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Tiny training budget (smoke test)")
    parser.add_argument(
        "--processes", type=int, nargs="+", default=[1, 2], help="Worker processes per fleet run"
    )
    parser.add_argument("--no-write", action="store_true", help="Print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="training-bench-") as directory,
        RedisServer() as redis_server,
        InfluxServer() as influx_server,
    ):
        workdir = Path(directory)
        database = f"bench_{uuid.uuid4().hex[:8]}"
        influx = InfluxSettings(url=influx_server.url, database=database, timeout_seconds=30)
        year_csv = workdir / "electricity__year_meter.csv"
        readings = pd.read_csv(YEAR_METER)
        stamps = pd.to_datetime(readings["timestamp"])
        readings[stamps > stamps.max() - pd.Timedelta(days=365)].to_csv(year_csv, index=False)
        import_meter_csv(year_csv, influx, meter_id="year_meter", meter_type="electricity")
        meters = []
        for path in sorted(METERS_DIR.glob("*.csv")):
            meter_type, name = path.stem.split("__", 1)
            for copy in (1, 2):
                import_meter_csv(path, influx, meter_id=f"{name}_{copy}", meter_type=meter_type)
                meters.append((f"{name}_{copy}", meter_type))
        env = stack_environment(
            redis_url=redis_server.url,
            influx_url=influx_server.url,
            database=database,
            workdir=workdir,
            extra={"WORKER__METRICS_PORT": "0"},
        )
        if not args.quick:
            env = {key: value for key, value in env.items() if key not in QUICK_BUDGET}
        year = one_year_job(env)
        print(
            f"one year: {year.seconds:.1f} s, peak RSS {year.peak_mib:.0f} MiB, stages {year.stages}",
            flush=True,
        )
        fleet = []
        for processes in args.processes:
            fleet.append(fleet_run(env, workdir, meters, processes))
            print(f"fleet, {processes} process(es): {fleet[-1].meters_per_hour:.0f} meters/hour", flush=True)
    section = render(year, fleet, args)
    print(section)
    if not args.no_write:
        write_section("Training", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
