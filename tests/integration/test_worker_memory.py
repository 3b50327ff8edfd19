"""Worker memory stays bounded over many trainings: the real stack, the shipped recycling setting.

A process that builds Keras models grows a few MB per training for good (``benchmarks/RESULTS.md``,
"Worker memory"); ``WORKER__MAX_JOBS_PER_PROCESS`` (default 20) hands over to a fresh process. Here
30 trainings of the real ``pjm_ekpc`` meter run through the API and ``dramatiq_worker.py`` with the
default recycling and a minimal budget (the growth comes from building models, not from their size).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from benchmarks.worker_memory import TARGET_GROWTH, run_scenario
from config.settings import InfluxSettings, WorkerSettings
from forecasting.importer import import_meter_csv
from tests.integration.stack import PROJECT_DIR
from tests.service_processes import InfluxServer, RedisServer

JOBS = 30
MINIMAL_BUDGET = {
    "TRAINING__MAX_TRIALS": "1",
    "TRAINING__EPOCHS": "2",
    "TRAINING__MAX_TRAIN_DAYS": "42",
    "TRAINING__BACKTEST_WEEKS": "1",
    "TRAINING__CHALLENGERS": "[]",
    "WORKER__METRICS_PORT": "0",
}


def test_30_trainings_end_within_15_percent_of_the_rss_after_three(
    redis_server: RedisServer, influxdb_server: InfluxServer, tmp_path: Path
) -> None:
    influx = InfluxSettings(
        url=influxdb_server.url, database=f"mem_{uuid.uuid4().hex[:8]}", timeout_seconds=30
    )
    import_meter_csv(
        PROJECT_DIR / "data" / "meters" / "electricity__pjm_ekpc.csv",
        influx,
        meter_id="pjm_ekpc",
        meter_type="electricity",
    )

    samples = run_scenario(JOBS, None, redis_server, influx, budget=MINIMAL_BUDGET, workdir=tmp_path)

    assert len(samples) == JOBS
    pids = list(dict.fromkeys(pid for pid, _ in samples))
    recycle_after = WorkerSettings().max_jobs_per_process
    assert len(pids) == -(-JOBS // recycle_after), f"one process per {recycle_after} jobs, got {pids}"
    after_three, last = samples[2][1], samples[-1][1]
    rss = ", ".join(f"{value:.0f}" for _, value in samples)
    assert last <= after_three * (1 + TARGET_GROWTH), f"RSS per job (MiB): {rss}"
