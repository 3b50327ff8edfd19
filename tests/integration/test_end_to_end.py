"""The main job end to end: HTTP → Redis → a real worker process → real InfluxDB → model on disk.

One stack (uvicorn + dramatiq_worker.py subprocesses) serves the whole module; training budgets are
tiny so the module runs in about a minute.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from config.settings import InfluxSettings
from forecasting.features import FeatureLayout
from forecasting.importer import import_meter_csv
from tests.integration.stack import PROJECT_DIR, Stack, stack_environment
from tests.service_processes import InfluxServer, RedisServer

REAL_METER = PROJECT_DIR / "data" / "meters" / "electricity__pjm_ekpc.csv"
STAGES = [
    ("PENDING", 0),
    ("STARTED", 0),
    ("CONNECTING", 5),
    ("FETCHING_DATA", 10),
    ("VALIDATING_DATA", 35),
    ("TRAINING_MODEL", 50),
    ("SAVING_MODEL", 90),
    ("SUCCESS", 100),
]
ORDER = {state: position for position, (state, _) in enumerate(STAGES)}


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, influxdb_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    database = f"e2e_{uuid.uuid4().hex[:10]}"
    influx = InfluxSettings(url=influxdb_server.url, database=database, timeout_seconds=10)
    import_meter_csv(REAL_METER, influx, meter_id="pjm_ekpc", meter_type="electricity")
    short = pd.read_csv(REAL_METER).head(24 * 10)
    short_csv = workdir / "electricity__short_meter.csv"
    short.to_csv(short_csv, index=False)
    import_meter_csv(short_csv, influx, meter_id="short_meter", meter_type="electricity")
    redis.Redis.from_url(redis_server.url).flushdb()
    env = stack_environment(
        redis_url=redis_server.url, influx_url=influxdb_server.url, database=database, workdir=workdir
    )
    running = Stack(env, workdir)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _train(stack: Stack, meter_id: str, meter_type: str = "electricity") -> tuple[str, list[dict[str, Any]]]:
    reply = stack.client.post("/trainmodel/", json={"meter_id": meter_id, "meter_type": meter_type})
    assert reply.status_code == 202, reply.text
    task_id = reply.json()["task_id"]
    return task_id, stack.poll_until_finished(task_id)


def test_real_meter_trains_through_every_stage_to_success(stack: Stack) -> None:
    reply = stack.client.post("/trainmodel/", json={"meter_id": "pjm_ekpc", "meter_type": "electricity"})

    assert reply.status_code == 202, reply.text
    body = reply.json()
    task_id = body["task_id"]
    assert body == {
        "task_id": task_id,
        "status": "PENDING",
        "progress": 0,
        "message": "Task queued for processing",
    }
    assert reply.headers["location"] == f"/trainmodel/status/{task_id}"

    seen = stack.poll_until_finished(task_id)
    final = seen[-1]
    assert final["status"] == "SUCCESS", json.dumps(final, indent=1)
    states = [status["status"] for status in seen]
    positions = [ORDER[state] for state in states]
    assert positions == sorted(positions), f"states out of order: {states}"
    assert {"TRAINING_MODEL", "SUCCESS"} <= set(states)
    progress = [status["progress"] for status in seen]
    assert progress == sorted(progress), f"progress went down: {progress}"
    for status in seen:
        assert status["progress"] >= dict(STAGES)[status["status"]]
    assert final["progress"] == 100 and final["attempt"] == 1
    for stamp in ("started_at", "updated_at"):
        assert final[stamp].endswith(("Z", "+00:00"))
    estimates = [status["estimated_completion"] for status in seen if status["estimated_completion"]]
    assert estimates, "no status carried an estimated_completion"
    started = datetime.fromisoformat(final["started_at"])
    for estimate in estimates:
        assert estimate.endswith(("Z", "+00:00")) and datetime.fromisoformat(estimate) > started

    result = final["result"]
    details = result["details"]
    assert details["meter_id"] == "pjm_ekpc" and details["meter_type"] == "electricity"
    assert details["data_points"] == len(pd.read_csv(REAL_METER))
    for key in ("training_completed", "data_fetch_time_seconds", "training_time_seconds"):
        assert details[key] is not None
    assert result["metrics"]["validation_mae"] > 0
    assert result["metrics"]["backtest"]["seasonal_naive"]["mae"] > 0
    assert result["promoted"] is True, result["promotion_reason"]

    model_dir = Path(details["model_path"])
    assert model_dir.parent == Path(stack.env["MODELS_DIR"]) / "electricity" / "pjm_ekpc"
    metadata = json.loads((model_dir / "metadata.json").read_text())
    for key in (
        "features",
        "layout",
        "scaling",
        "horizon_hours",
        "data_window",
        "metrics",
        "library_versions",
    ):
        assert metadata[key], key
    assert metadata["horizon_hours"] == 24

    import keras

    model = keras.saving.load_model(model_dir / "model.keras", compile=False)
    width = FeatureLayout.from_dict(metadata["layout"]).input_width
    prediction = np.asarray(model(np.zeros((1, width), dtype="float32")))
    assert prediction.shape == (1, 24) and np.isfinite(prediction).all()


def test_forecast_returns_history_then_24_hourly_forecasts(stack: Stack) -> None:
    reply = stack.client.post(
        "/forecast/",
        json={
            "meter_id": "pjm_ekpc",
            "meter_type": "electricity",
            "start_date": "2018-08-02",
            "end_date": "2018-08-04",
            "resolution": "hourly",
        },
    )

    assert reply.status_code == 200, reply.text
    rows = reply.json()["forecast_data"]
    kinds = [row["type"] for row in rows]
    assert kinds == sorted(kinds, key=lambda kind: kind == "forecast"), "forecasts must follow history"
    forecasts = [row for row in rows if row["type"] == "forecast"]
    assert len(forecasts) == 24
    assert all(row["p10"] <= row["value"] <= row["p90"] for row in forecasts)
    history = pd.read_csv(REAL_METER, parse_dates=["timestamp"]).set_index("timestamp")["value"]
    first_measured = next(row for row in rows if row["type"] == "historical")
    assert first_measured["value"] == history[pd.Timestamp(first_measured["datetime"])]


def test_model_listings_show_versions_with_metrics_window_and_quality(stack: Stack) -> None:
    listing = stack.client.get("/models/")
    detail = stack.client.get("/models/electricity/pjm_ekpc")

    assert listing.status_code == 200 and detail.status_code == 200, (listing.text, detail.text)
    meter = next(row for row in listing.json()["models"] if row["meter_id"] == "pjm_ekpc")
    versions = detail.json()["versions"]
    assert meter["meter_type"] == "electricity" and versions
    assert [row["version"] for row in meter["versions"]] == [row["version"] for row in versions]
    active = [row for row in versions if row["active"]]
    assert len(active) == 1 and meter["active_version"] == active[0]["version"]
    assert detail.json()["active_version"] == active[0]["version"]
    assert all(row["uses_temperature"] is False and row["features"] for row in versions)
    for row in versions:
        assert row["metrics"]["backtest"]["seasonal_naive"]["mae"] > 0
        assert row["data_window"]["end"].startswith("2018-08-03")
        assert row["data_quality"]["raw_points"] == len(pd.read_csv(REAL_METER))
    assert "data_quality" not in meter["versions"][0], "the fleet listing leaves the reports out"


def test_forecast_errors_and_the_baseline_fallback_over_http(stack: Stack) -> None:
    def ask(meter_id: str, start: str, end: str, **extra: str) -> Any:
        body = {"meter_id": meter_id, "meter_type": "electricity", "start_date": start, "end_date": end}
        return stack.client.post("/forecast/", json={**body, "resolution": "hourly", **extra})

    beyond = ask("pjm_ekpc", "2018-08-02", "2018-08-05")
    untrained = ask("short_meter", "2015-08-10", "2015-08-11")
    baseline = ask("short_meter", "2015-08-10", "2015-08-11", fallback="seasonal_naive")

    assert beyond.status_code == 422
    assert "use an end_date on or before 2018-08-04" in beyond.json()["message"]
    assert untrained.status_code == 404
    assert "No trained model for meter 'short_meter'" in untrained.json()["message"]
    assert baseline.status_code == 200, baseline.text
    assert baseline.json()["model_kind"] == "seasonal_naive" and baseline.json()["model_version"] is None
    forecasts = [row for row in baseline.json()["forecast_data"] if row["type"] == "forecast"]
    measured = pd.read_csv(REAL_METER, parse_dates=["timestamp"]).set_index("timestamp")["value"]
    first = pd.Timestamp(forecasts[0]["datetime"])
    assert first == pd.Timestamp("2015-08-11T03:00:00Z"), "the forecast starts after the last reading"
    assert forecasts[0]["value"] == measured[first - pd.Timedelta(days=7)]


def test_daily_forecast_rows_say_whether_they_cover_the_whole_day(stack: Stack) -> None:
    reply = stack.client.post(
        "/forecast/",
        json={
            "meter_id": "pjm_ekpc",
            "meter_type": "electricity",
            "start_date": "2018-08-02",
            "end_date": "2018-08-04",
            "resolution": "daily",
        },
    )

    assert reply.status_code == 200, reply.text
    coverage = [
        (row["datetime"][:10], row["type"], row["complete"], row["hours"], row["forecast_hours"])
        for row in reply.json()["forecast_data"]
    ]
    # The last reading is 2018-08-03 03:00 UTC; the 24 h forecast ends at 2018-08-04 03:00.
    assert coverage == [
        ("2018-08-02", "historical", True, 24.0, 0.0),
        ("2018-08-03", "forecast", True, 24.0, 20.0),
        ("2018-08-04", "forecast", False, 4.0, 4.0),
    ]


def test_meter_without_data_fails_with_data_error_and_no_retry(stack: Stack) -> None:
    _, seen = _train(stack, "no_such_meter")

    final = seen[-1]
    assert final["status"] == "FAILED"
    assert final["error"]["type"] == "DATA"
    assert "No readings found for meter 'no_such_meter'" in final["error"]["message"]
    assert final["attempt"] == 1
    assert "RETRYING" not in [status["status"] for status in seen]


def test_too_little_history_fails_saying_what_was_found_and_needed(stack: Stack) -> None:
    _, seen = _train(stack, "short_meter")

    final = seen[-1]
    assert final["status"] == "FAILED" and final["error"]["type"] == "DATA"
    message = final["error"]["message"]
    assert "found 10.0 days of usable readings (240 points" in message, message
    assert "need at least 28 days" in message
    assert final["attempt"] == 1


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        ({"meter_id": "m1", "meter_type": "plutonium"}, "Unknown meter_type"),
        ({"meter_id": "", "meter_type": "electricity"}, "Invalid meter_id"),
        ({"meter_id": "a'b", "meter_type": "electricity"}, "Invalid meter_id"),
        ({"meter_id": '"; DROP', "meter_type": "electricity"}, "Invalid meter_id"),
        ({"meter_id": "../../etc/passwd", "meter_type": "electricity"}, "Invalid meter_id"),
        ({"meter_id": "m1\nm2", "meter_type": "electricity"}, "Invalid meter_id"),
        ({"meter_id": "x" * 200, "meter_type": "electricity"}, "meter_id"),
        ({"meter_type": "electricity"}, "meter_id"),
    ],
)
def test_bad_requests_get_422_and_nothing_is_queued(
    stack: Stack, redis_server: RedisServer, payload: dict[str, str], complaint: str
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    jobs_before = len(client.keys("ef:job:*"))

    reply = stack.client.post("/trainmodel/", json=payload)

    assert reply.status_code == 422
    assert complaint in reply.json()["message"]
    assert "x" * 200 not in reply.text, "hostile input must not be echoed back"
    assert len(client.keys("ef:job:*")) == jobs_before
    assert client.llen("dramatiq:training") == 0


def test_unknown_task_is_404_with_a_message(stack: Stack) -> None:
    task_id = str(uuid.uuid4())

    unknown = stack.client.get(f"/trainmodel/status/{task_id}")
    malformed = stack.client.get("/trainmodel/status/does-not-exist")

    assert unknown.status_code == 404 and malformed.status_code == 404
    assert f"No training task with id '{task_id}'" in unknown.json()["message"]
    assert "task ids are the UUIDs" in malformed.json()["message"]
    assert "does-not-exist" not in malformed.text


def test_health_reports_dependencies_and_workers(stack: Stack) -> None:
    health = stack.client.get("/health/")
    workers = stack.client.get("/health/worker")

    assert health.status_code == 200, health.text
    assert health.json()["dependencies"]["redis"]["status"] == "up"
    assert health.json()["dependencies"]["influxdb"]["status"] == "up"
    assert workers.status_code == 200 and workers.json()["live_workers"] == 1


def test_health_answers_head_requests_with_the_same_status(stack: Stack) -> None:
    health = stack.client.head("/health/")
    workers = stack.client.head("/health/worker")

    assert (health.status_code, workers.status_code) == (200, 200)
    assert health.content == b"" and workers.content == b""
