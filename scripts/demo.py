"""The service end to end in one command (``make demo``): start, train a real meter, forecast, stop.

It starts the local stack (see :mod:`scripts.stack`), queues training of the imported PJM EKPC meter
through the API, prints every status change as the worker reports it, then the result and a
24-hour hourly forecast after the last reading. Whatever it started is stopped at the end, also on
failure or Ctrl-C. The exit code is 0 only if training reached SUCCESS and the forecast worked.

Environment: as for ``scripts.stack``, plus ``DEMO_TIMEOUT`` (seconds to wait for training, 900).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from datetime import date, timedelta
from typing import Any

import httpx
from pydantic import ValidationError

from config.settings import get_settings
from scripts.bootstrap import BootstrapError
from scripts.processes import ProcessRecord, is_running, log_tail
from scripts.services import ServiceError
from scripts.stack import StackError, StackOptions, raise_on_sigterm, start_stack, stop_stack

METER_ID, METER_TYPE = "pjm_ekpc", "electricity"
POLL_SECONDS = 0.25


class DemoError(RuntimeError):
    """A step of the demo failed; the message is printed as is."""


def follow_training(
    client: httpx.Client, task_id: str, *, worker: ProcessRecord, timeout_seconds: float
) -> dict[str, Any]:
    """Poll the job's status, print each change of (state, progress, message); return the final status."""
    started = time.monotonic()
    last_seen: tuple[str, int, str] | None = None
    while True:
        reply = client.get(f"/trainmodel/status/{task_id}")
        if reply.status_code != httpx.codes.OK:
            raise DemoError(
                f"GET /trainmodel/status/{task_id} answered {reply.status_code}: {reply.text[:300]}"
            )
        status = reply.json()
        seen = (status["status"], status["progress"], status["message"])
        if seen != last_seen:
            print(f"  {time.monotonic() - started:6.1f} s  {seen[0]:<16}{seen[1]:>4}%  {seen[2]}", flush=True)
            last_seen = seen
        if status["status"] in ("SUCCESS", "FAILED", "CANCELLED"):
            return status
        if not is_running(worker):
            raise DemoError(f"The worker exited during training; end of its log:\n{log_tail(worker)}")
        if time.monotonic() - started > timeout_seconds:
            raise DemoError(f"Training did not finish within {timeout_seconds:.0f} s (DEMO_TIMEOUT).")
        time.sleep(POLL_SECONDS)


def print_result(status: dict[str, Any], wall_seconds: float) -> None:
    result = status["result"]
    details, metrics = result["details"], result["metrics"]
    backtest = metrics["backtest"]
    print(f"\nResult: {status['status']} after {wall_seconds:.1f} s: {result['message']}")
    print(
        f"  training time      {details['training_time_seconds']:.1f} s (fit and backtest; "
        f"data fetch {details['data_fetch_time_seconds']:.1f} s, {details['data_points']} readings)"
    )
    print(
        f"  backtest           MAE {backtest['model']['mae']:.1f} vs seasonal naive "
        f"{backtest['seasonal_naive']['mae']:.1f} over {backtest['origins']} day-ahead forecasts "
        f"({backtest['window_start'][:10]} .. {backtest['window_end'][:10]})"
    )
    skill = metrics["skill"]
    print(
        f"  skill              {'n/a' if skill is None else f'{skill:.3f}'} (1 - MAE / naive MAE; > 0 beats naive)"
    )
    print(f"  model              {details['model_kind']} version {details['model_version']}")
    print(f"  model path         {details['model_path']}")
    print(f"  active             {'yes' if result['promoted'] else 'no'} ({result['promotion_reason']})")


def last_reading_date(client: httpx.Client, model_version: str) -> date:
    """The last reading of the training data, from the model registry's record of the version."""
    reply = client.get(f"/models/{METER_TYPE}/{METER_ID}")
    reply.raise_for_status()
    for version in reply.json()["versions"]:
        if version["version"] == model_version:
            return date.fromisoformat(version["data_window"]["end"][:10])
    raise DemoError(f"GET /models/{METER_TYPE}/{METER_ID} does not list version {model_version}")


def print_forecast(client: httpx.Client, first_day: date) -> None:
    request = {
        "meter_id": METER_ID,
        "meter_type": METER_TYPE,
        "start_date": first_day.isoformat(),
        "end_date": (first_day + timedelta(days=1)).isoformat(),
        "resolution": "hourly",
    }
    reply = client.post("/forecast/", json=request)
    if reply.status_code != httpx.codes.OK:
        raise DemoError(f"POST /forecast/ answered {reply.status_code}: {reply.text[:300]}")
    body = reply.json()
    rows = [row for row in body["forecast_data"] if row["type"] == "forecast"]
    measured = len(body["forecast_data"]) - len(rows)
    print(
        f"\nForecast {request['start_date']} .. {request['end_date']}, hourly "
        f"({body['model_kind']} version {body['model_version']}): {len(rows)} hours after the last reading "
        f"({measured} measured hours of those days not shown)"
    )
    print(f"  {'datetime':<27}{'forecast':>10}{'p10':>10}{'p90':>10}")
    for row in rows:
        p10 = "" if row["p10"] is None else f"{row['p10']:.0f}"
        p90 = "" if row["p90"] is None else f"{row['p90']:.0f}"
        print(f"  {row['datetime']:<27}{row['value']:>10.0f}{p10:>10}{p90:>10}")


class Demo:
    """Train, report, forecast; remembers the task so an interrupted demo can cancel it."""

    def __init__(self, client: httpx.Client, *, worker: ProcessRecord, timeout_seconds: float) -> None:
        self._client, self._worker, self._timeout_seconds = client, worker, timeout_seconds
        self.task_id: str | None = None

    def run(self) -> bool:
        """True when training reached SUCCESS and the forecast was served."""
        reply = self._client.post("/trainmodel/", json={"meter_id": METER_ID, "meter_type": METER_TYPE})
        if reply.status_code not in (httpx.codes.OK, httpx.codes.ACCEPTED):
            raise DemoError(f"POST /trainmodel/ answered {reply.status_code}: {reply.text[:300]}")
        self.task_id = reply.json()["task_id"]
        print(
            f"\nTraining {METER_TYPE} meter {METER_ID}: task {self.task_id} (poll {reply.headers.get('location')})"
        )
        started = time.monotonic()
        status = follow_training(
            self._client, self.task_id, worker=self._worker, timeout_seconds=self._timeout_seconds
        )
        if status["status"] != "SUCCESS":
            error = status.get("error") or {}
            print(
                f"\nTraining ended {status['status']}: {error.get('type')}: {error.get('message', status['message'])}"
            )
            return False
        print_result(status, time.monotonic() - started)
        print_forecast(
            self._client, last_reading_date(self._client, status["result"]["details"]["model_version"])
        )
        return True

    def cancel(self) -> None:
        """Cancel the training job (it stops at its next epoch), so stopping the worker is quick."""
        if self.task_id is None:
            return
        with contextlib.suppress(httpx.HTTPError):
            reply = self._client.delete(f"/trainmodel/{self.task_id}")
            if reply.status_code == httpx.codes.OK:
                print(f"Cancelled training task {self.task_id}.", file=sys.stderr)


def main() -> int:
    raise_on_sigterm()
    options = StackOptions.from_environment()
    timeout_seconds = float(os.environ.get("DEMO_TIMEOUT") or 900)
    started = time.monotonic()
    try:
        state = start_stack(get_settings(), options, owner="demo")
    except (StackError, ServiceError, BootstrapError, ValidationError) as error:
        print(f"\nThe demo could not start the stack: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted while starting; stopped what had started.", file=sys.stderr)
        return 130
    exit_code = 1
    worker = next(record for record in state.processes if record.name == "worker")
    try:
        with httpx.Client(base_url=options.api_url, timeout=60.0) as client:
            demo = Demo(client, worker=worker, timeout_seconds=timeout_seconds)
            try:
                exit_code = 0 if demo.run() else 1
            except (KeyboardInterrupt, SystemExit):
                print("\nInterrupted.", file=sys.stderr)
                demo.cancel()
                exit_code = 130
    except (DemoError, httpx.HTTPError) as error:
        print(f"\nThe demo failed: {error}", file=sys.stderr)
    finally:
        # A second Ctrl-C must not leave half the stack running; stopping is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nStopping what the demo started:", flush=True)
        stop_stack(options.run_dir)
    print(f"\nDemo {'finished' if exit_code == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s.")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
