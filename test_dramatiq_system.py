"""Check a RUNNING deployment end to end: health, a real training job, its result, a forecast, errors.

Not a pytest module (pytest collects only ``tests/``): it is run against a live service, e.g.

    make up && .venv/bin/python test_dramatiq_system.py && make down
    .venv/bin/python test_dramatiq_system.py --base-url http://forecast.internal:8000 --meter-id m1
    API_KEY=... .venv/bin/python test_dramatiq_system.py     # or --api-key: sent as X-API-Key

Each check prints one PASS or FAIL line; the exit code is 1 if any check failed. The meter must
have history in the deployment's InfluxDB (``make up`` imports ``pjm_ekpc``).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx

#: The documented order of a successful job's states; polling may skip some, never go back.
STATE_ORDER = [
    "PENDING",
    "STARTED",
    "CONNECTING",
    "FETCHING_DATA",
    "VALIDATING_DATA",
    "TRAINING_MODEL",
    "SAVING_MODEL",
    "SUCCESS",
]
FINISHED_STATES = {"SUCCESS", "FAILED", "CANCELLED"}
POLL_SECONDS = 0.5


class CheckFailed(Exception):
    """A check's expectation did not hold; the message says what was seen."""


@dataclass
class SystemCheck:
    """Runs the checks in order against one deployment and remembers what later checks need."""

    client: httpx.Client
    meter_id: str
    meter_type: str
    timeout_seconds: float
    failures: int = 0
    checks_run: int = 0
    final_status: dict[str, Any] | None = None
    states_seen: list[str] = field(default_factory=list)

    def run(self, name: str, check: Callable[[], str]) -> None:
        self.checks_run += 1
        try:
            detail = check()
        except (CheckFailed, httpx.HTTPError, KeyError, TypeError, ValueError) as error:
            self.failures += 1
            print(
                f"FAIL  {name}: {type(error).__name__ + ': ' if not isinstance(error, CheckFailed) else ''}{error}"
            )
        else:
            print(f"PASS  {name}: {detail}")
        sys.stdout.flush()

    # -- the checks -------------------------------------------------------------------------------
    def api_health(self) -> str:
        reply = self.client.get("/health/")
        _expect_status(reply, 200)
        dependencies = reply.json()["dependencies"]
        return ", ".join(f"{name} {state['status']}" for name, state in dependencies.items())

    def worker_health(self) -> str:
        reply = self.client.get("/health/worker")
        _expect_status(reply, 200)
        live = reply.json()["live_workers"]
        if live < 1:
            raise CheckFailed(f"live_workers is {live}")
        return f"{live} live worker(s), queue depth {reply.json()['queue_depth']}"

    def unknown_task(self) -> str:
        reply = self.client.get(f"/trainmodel/status/{uuid.uuid4()}")
        _expect_status(reply, 404)
        return "GET /trainmodel/status/<unknown id> -> 404"

    def bad_meter_type(self) -> str:
        reply = self.client.post(
            "/trainmodel/", json={"meter_id": self.meter_id, "meter_type": "no_such_type"}
        )
        _expect_status(reply, 422)
        return "POST /trainmodel/ with meter_type 'no_such_type' -> 422"

    def training(self) -> str:
        reply = self.client.post(
            "/trainmodel/", json={"meter_id": self.meter_id, "meter_type": self.meter_type}
        )
        _expect_status(reply, 202, 200)
        task_id = reply.json()["task_id"]
        location = reply.headers.get("location", "")
        if not location.endswith(f"/trainmodel/status/{task_id}"):
            raise CheckFailed(f"Location header is {location!r}")
        started = time.monotonic()
        last_progress = -1
        while True:
            status = self.client.get(f"/trainmodel/status/{task_id}")
            _expect_status(status, 200)
            body = status.json()
            state, progress = body["status"], body["progress"]
            if not self.states_seen or self.states_seen[-1] != state:
                self._check_order(state)
                self.states_seen.append(state)
            if progress < last_progress:
                raise CheckFailed(f"progress went back from {last_progress} to {progress} in {state}")
            last_progress = progress
            if state in FINISHED_STATES:
                break
            if time.monotonic() - started > self.timeout_seconds:
                raise CheckFailed(f"still {state} ({progress}%) after {self.timeout_seconds:.0f} s")
            time.sleep(POLL_SECONDS)
        self.final_status = body
        if state != "SUCCESS":
            error = body.get("error") or {}
            raise CheckFailed(f"ended {state}: {error.get('type')}: {error.get('message')}")
        if progress != 100:
            raise CheckFailed(f"SUCCESS with progress {progress}")
        return f"SUCCESS in {time.monotonic() - started:.1f} s via {' > '.join(self.states_seen)}"

    def _check_order(self, state: str) -> None:
        if state not in STATE_ORDER:
            raise CheckFailed(f"unexpected state {state} after {' > '.join(self.states_seen)}")
        if self.states_seen and STATE_ORDER.index(state) < STATE_ORDER.index(self.states_seen[-1]):
            raise CheckFailed(f"state {state} came after {' > '.join(self.states_seen)}")

    def training_result(self) -> str:
        result = self._successful_result()
        model_path = result["details"]["model_path"]
        if not model_path:
            raise CheckFailed("details.model_path is empty")
        metrics = result["metrics"]
        backtest = metrics["backtest"]
        for name, value in (
            ("metrics.validation_mae", metrics["validation_mae"]),
            ("metrics.backtest.model.mae", backtest["model"]["mae"]),
            ("metrics.backtest.seasonal_naive.mae", backtest["seasonal_naive"]["mae"]),
        ):
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise CheckFailed(f"{name} is {value!r}")
        skill = metrics["skill"]
        skill_text = f"{skill:.3f}" if isinstance(skill, int | float) else "not scored"
        return (
            f"model_path {model_path}; backtest MAE {backtest['model']['mae']:.4g} vs seasonal naive "
            f"{backtest['seasonal_naive']['mae']:.4g} (skill {skill_text})"
        )

    def forecast(self) -> str:
        result = self._successful_result()
        first_day = self._last_reading_date(result["details"]["model_version"])
        reply = self.client.post(
            "/forecast/",
            json={
                "meter_id": self.meter_id,
                "meter_type": self.meter_type,
                "start_date": first_day.isoformat(),
                "end_date": (first_day + timedelta(days=1)).isoformat(),
                "resolution": "hourly",
            },
        )
        _expect_status(reply, 200)
        rows = [row for row in reply.json()["forecast_data"] if row["type"] == "forecast"]
        if len(rows) != 24:
            raise CheckFailed(f"{len(rows)} forecast rows, expected 24")
        times = [datetime.fromisoformat(row["datetime"]) for row in rows]
        steps = {later - earlier for earlier, later in itertools.pairwise(times)}
        if steps != {timedelta(hours=1)}:
            raise CheckFailed(f"forecast rows are not hourly: steps {sorted(steps)}")
        for row in rows:
            if not math.isfinite(row["value"]):
                raise CheckFailed(f"non-finite forecast value at {row['datetime']}")
            if row["p10"] is not None and row["p90"] is not None and row["p10"] > row["p90"]:
                raise CheckFailed(f"p10 > p90 at {row['datetime']}")
        body = reply.json()
        return (
            f"24 hourly forecast rows from {rows[0]['datetime']} to {rows[-1]['datetime']} "
            f"({body['model_kind']} version {body['model_version']})"
        )

    def _successful_result(self) -> dict[str, Any]:
        if not self.final_status or self.final_status["status"] != "SUCCESS":
            raise CheckFailed("not checked: training did not succeed")
        return self.final_status["result"]

    def _last_reading_date(self, model_version: str) -> date:
        reply = self.client.get(f"/models/{self.meter_type}/{self.meter_id}")
        _expect_status(reply, 200)
        for version in reply.json()["versions"]:
            if version["version"] == model_version:
                return date.fromisoformat(version["data_window"]["end"][:10])
        raise CheckFailed(f"GET /models/{self.meter_type}/{self.meter_id} does not list {model_version}")


def _expect_status(reply: httpx.Response, *expected: int) -> None:
    if reply.status_code not in expected:
        raise CheckFailed(
            f"{reply.request.method} {reply.request.url.path} answered {reply.status_code} "
            f"(expected {' or '.join(map(str, expected))}): {reply.text[:300]}"
        )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-url",
        default=os.environ.get("EF_BASE_URL", "http://127.0.0.1:8000"),
        help="API root (default: $EF_BASE_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("API_KEY") or None,
        help="the deployment's API key, sent as X-API-Key (default: $API_KEY, the variable the service reads)",
    )
    parser.add_argument("--meter-id", default="pjm_ekpc")
    parser.add_argument("--meter-type", default="electricity")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for training")
    return parser.parse_args(argv)


def api_client(base_url: str, api_key: str | None) -> httpx.Client:
    """A client for the deployment; with a key, every request carries ``X-API-Key``."""
    headers = {"X-API-Key": api_key} if api_key else {}
    return httpx.Client(base_url=base_url, timeout=60.0, headers=headers)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    key_note = " (sending an API key)" if arguments.api_key else ""
    print(f"Checking {arguments.base_url} with {arguments.meter_type} meter {arguments.meter_id}{key_note}")
    with api_client(arguments.base_url, arguments.api_key) as client:
        checks = SystemCheck(client, arguments.meter_id, arguments.meter_type, arguments.timeout)
        checks.run("API health (/health/)", checks.api_health)
        checks.run("worker health (/health/worker)", checks.worker_health)
        checks.run("unknown task id", checks.unknown_task)
        checks.run("invalid meter_type", checks.bad_meter_type)
        checks.run("training to SUCCESS", checks.training)
        checks.run("training result", checks.training_result)
        checks.run("hourly forecast", checks.forecast)
    passed = checks.checks_run - checks.failures
    print(f"{'FAILED' if checks.failures else 'PASSED'}: {passed} of {checks.checks_run} checks passed")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
