"""``GET /metrics`` and the workers' metrics port against the real stack, after real jobs ran."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.stack import Stack

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    reply = httpx.get(url, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def train(stack: Stack, meter_id: str) -> str:
    reply = stack.client.post("/trainmodel/", json={"meter_id": meter_id, "meter_type": "electricity"})
    assert reply.status_code == 202, reply.text
    task_id = reply.json()["task_id"]
    assert stack.poll_until_finished(task_id)[-1]["status"] in ("SUCCESS", "FAILED")
    return task_id


@pytest.fixture(scope="module")
def runs(observed_stack: Stack) -> dict[str, str]:
    """One successful and one failed (no data) job, run to the end before any scrape."""
    return {"success": train(observed_stack, "pjm_ekpc"), "failure": train(observed_stack, "no_such_meter")}


def test_api_metrics_count_requests_by_route_template_method_and_status(
    observed_stack: Stack, runs: dict[str, str]
) -> None:
    observed_stack.client.get("/trainmodel/status/never-existed")

    samples = scrape(f"{observed_stack.base_url}/metrics")

    assert value(samples, "http_requests_total", route="/trainmodel/", method="POST", status="202") == 2
    status_route = "/trainmodel/status/{task_id}"
    assert value(samples, "http_requests_total", route=status_route, method="GET", status="200") >= 2
    assert value(samples, "http_requests_total", route=status_route, method="GET", status="404") == 1
    assert value(samples, "http_request_duration_seconds_count", route="/trainmodel/", method="POST") == 2
    assert value(samples, "http_request_duration_seconds_sum", route="/trainmodel/", method="POST") > 0
    assert not [key for key in samples if ("route", "/trainmodel/status/never-existed") in key[1]]
    assert value(samples, "training_jobs_queued_total") == 2


def test_api_metrics_show_fleet_job_outcomes_durations_and_stages(
    observed_stack: Stack, runs: dict[str, str]
) -> None:
    samples = scrape(f"{observed_stack.base_url}/metrics")

    assert value(samples, "training_jobs_finished_total", state="SUCCESS", error_type="") == 1
    assert value(samples, "training_jobs_finished_total", state="FAILED", error_type="DATA") == 1
    assert value(samples, "training_job_duration_seconds_count", state="SUCCESS") == 1
    assert value(samples, "training_job_duration_seconds_bucket", state="SUCCESS", le="+Inf") == 1
    assert value(samples, "training_job_duration_seconds_sum", state="SUCCESS") > 1
    assert value(samples, "training_stage_seconds_total", stage="train") > 0
    assert value(samples, "training_stage_jobs_total", stage="train") == 1


def test_api_metrics_show_queue_depth_live_workers_and_store(
    observed_stack: Stack, runs: dict[str, str]
) -> None:
    samples = scrape(f"{observed_stack.base_url}/metrics")

    assert value(samples, "training_store_up") == 1
    assert value(samples, "training_live_workers") == 1
    assert ("training_queue_depth", frozenset({("queue", "training")})) in samples
    assert value(samples, "training_queue_depth", queue="training") == 0
    assert value(samples, "training_dead_letters", queue="training") == 0


def test_cancelled_job_is_counted(observed_stack: Stack, runs: dict[str, str]) -> None:
    reply = observed_stack.client.post(
        "/trainmodel/", json={"meter_id": "pjm_ekpc", "meter_type": "electricity"}
    )
    task_id = reply.json()["task_id"]

    cancelled = observed_stack.client.delete(f"/trainmodel/{task_id}")

    assert cancelled.status_code == 200, cancelled.text
    samples = scrape(f"{observed_stack.base_url}/metrics")
    assert value(samples, "training_jobs_finished_total", state="CANCELLED", error_type="") == 1
    observed_stack.poll_until_finished(task_id)  # leave no job behind for the next test


def test_worker_port_serves_dramatiq_message_metrics(observed_stack: Stack, runs: dict[str, str]) -> None:
    port = observed_stack.env["WORKER__METRICS_PORT"]

    samples = scrape(f"http://127.0.0.1:{port}/metrics")

    assert "Unexpected failure" not in observed_stack.worker.log_path.read_text(), "a middleware failed"
    processed = value(samples, "dramatiq_messages_total", queue_name="training", actor_name="train_model")
    assert processed >= 2
    assert (
        value(
            samples,
            "dramatiq_message_duration_milliseconds_count",
            queue_name="training",
            actor_name="train_model",
        )
        >= 2
    )


def _job_log_lines(stack: Stack, task_id: str) -> list[str]:
    log_dir = Path(stack.env["LOG_DIR"])
    return [
        line
        for path in sorted(log_dir.glob("energy_forecasting_*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if f"task_id={task_id}" in line
    ]


def test_worker_log_has_one_summary_line_per_job_with_ids_and_stage_timings(
    observed_stack: Stack, runs: dict[str, str]
) -> None:
    succeeded = [
        line for line in _job_log_lines(observed_stack, runs["success"]) if "training_job_summary" in line
    ]
    failed = [
        line for line in _job_log_lines(observed_stack, runs["failure"]) if "training_job_summary" in line
    ]

    assert len(succeeded) == 1 and len(failed) == 1, (succeeded, failed)
    for field in ("outcome=SUCCESS", "meter_id=pjm_ekpc", "fetch=", "clean=", "train=", "backtest=", "save="):
        assert field in succeeded[0], succeeded[0]
    for field in (
        "outcome=FAILED",
        "error_type=DATA",
        "error=NoHistoryError",
        "meter_id=no_such_meter",
        "fetch=",
    ):
        assert field in failed[0], failed[0]


def test_every_worker_log_line_of_a_job_carries_its_task_and_meter(
    observed_stack: Stack, runs: dict[str, str]
) -> None:
    """Between a job's first and last line, every line the worker wrote names that job."""
    task_id = runs["success"]
    log_dir = Path(observed_stack.env["LOG_DIR"])
    for path in sorted(log_dir.glob("energy_forecasting_*.log")):
        lines = path.read_text(errors="replace").splitlines()
        mine = [number for number, line in enumerate(lines) if f"task_id={task_id}" in line]
        if not mine:
            continue
        window = lines[mine[0] : mine[-1] + 1]
        assert len(window) > 5, window  # stages, history, backtest, summary at the least
        strays = [
            line for line in window if f"task_id={task_id}" not in line or "meter_id=pjm_ekpc" not in line
        ]
        assert not strays, strays
        return
    raise AssertionError(f"no log lines for task {task_id}")
