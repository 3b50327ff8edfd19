"""The whole service on one machine: Redis, InfluxDB, sample data, worker and API.

``make up`` starts it in the background and ``make down`` stops it; ``make demo`` uses the same
functions in the foreground. Servers already answering on the configured URLs are used as they
are and left alone; everything this script starts is recorded in ``run/stack.json`` (logs in
``run/logs/``, InfluxDB data in ``run/influxdb/``) so that ``down`` stops exactly that.

Environment: the service's own settings (``REDIS_URL``, ``INFLUXDB__URL``, ...; see
``config/settings.py``) plus ``API_HOST`` / ``API_PORT`` (default 127.0.0.1:8000),
``INFLUXDB_RPC_BIND`` (default 127.0.0.1:8088, or a free port when that is taken) and
``IMPORT_FILES`` (space-separated meter CSVs to load; default the PJM EKPC meter).

    python -m scripts.stack up | down | status
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from config.settings import Settings, get_settings
from scripts.bootstrap import BootstrapError, ensure_binaries
from scripts.processes import (
    ProcessRecord,
    StackState,
    exit_code,
    is_running,
    log_tail,
    start_process,
    stop_process,
)
from scripts.services import (
    LocalAddress,
    ServiceError,
    choose_rpc_bind,
    influxdb_answers,
    influxdb_config,
    port_is_open,
    redact,
    redis_answers,
    redis_command,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = PROJECT_ROOT / "run"
DEFAULT_IMPORT_FILES = "data/meters/electricity__pjm_ekpc.csv"

SERVER_READY_SECONDS = 30.0
API_READY_SECONDS = 60.0
# The worker imports TensorFlow before its first heartbeat.
WORKER_READY_SECONDS = 180.0
_POLL_SECONDS = 0.2

#: Seconds each process gets to stop after SIGTERM before it is killed (worker: finish an epoch).
STOP_TIMEOUT_SECONDS = {"api": 15.0, "worker": 60.0, "influxdb": 30.0, "redis": 15.0}
LABELS = {"api": "API", "worker": "worker", "influxdb": "InfluxDB", "redis": "Redis"}


class StackError(RuntimeError):
    """The stack could not be started; the message says what to look at."""


@dataclass(frozen=True)
class StackOptions:
    """How the stack is laid out on this machine (not settings of the service itself)."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    run_dir: Path = RUN_DIR
    import_files: tuple[str, ...] = (DEFAULT_IMPORT_FILES,)
    influxdb_rpc_bind: str | None = None

    @classmethod
    def from_environment(cls) -> StackOptions:
        return cls(
            api_host=os.environ.get("API_HOST") or "127.0.0.1",
            api_port=int(os.environ.get("API_PORT") or 8000),
            import_files=tuple(os.environ.get("IMPORT_FILES", DEFAULT_IMPORT_FILES).split()),
            influxdb_rpc_bind=os.environ.get("INFLUXDB_RPC_BIND") or None,
        )

    @property
    def api_url(self) -> str:
        """Where a client on this machine reaches the API (a wildcard bind is reached on loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.api_host, self.api_host)
        return f"http://[{host}]:{self.api_port}" if ":" in host else f"http://{host}:{self.api_port}"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"


def say(label: str, text: str) -> None:
    print(f"{label:<9} {text}", flush=True)


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks stop what was started."""

    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


# -- starting ------------------------------------------------------------------------------------------
def start_stack(settings: Settings, options: StackOptions, *, owner: str) -> StackState:
    """Start what is missing, load the sample data, start worker and API, wait until healthy.

    On any failure (or Ctrl-C) whatever was already started is stopped again before raising.
    """
    _refuse_if_running(options)
    _ensure_port_free(options)
    state = StackState(
        owner=owner,
        api_url=options.api_url,
        redis_url=redact(settings.redis_url),
        influxdb_url=redact(settings.influxdb.url),
    )
    state.save(options.run_dir)
    try:
        _ensure_redis(settings, options, state)
        _ensure_influxdb(settings, options, state)
        for csv_file in options.import_files:
            _import_meter_file(csv_file, options)
        env = _service_environment(settings, options)
        worker = _start(state, options, "worker", [sys.executable, "dramatiq_worker.py"], env)
        say("worker", f"started (pid {worker.pid}, log {_relative(worker.log)})")
        api = _start(state, options, "api", api_command(settings, options), env)
        say("API", f"started on {options.api_url} (pid {api.pid}, log {_relative(api.log)})")
        wait_until_healthy(options.api_url, api=api, worker=worker)
    except BaseException:
        stop_stack(options.run_dir)
        raise
    return state


def api_command(settings: Settings, options: StackOptions) -> list[str]:
    """uvicorn serving the API; with DEBUG=true, restarted whenever the project's source changes.

    Not uvicorn's ``--reload``: its ``--reload-dir`` takes directories, the top-level modules
    (``main_dramatiq.py``, ``logger_config.py``...) live in the project folder itself, and without
    the watchfiles package uvicorn finds changes by listing every ``*.py`` under its directories
    four times a second — the project folder's ``.venv/`` alone has ~190,000 folders.
    :mod:`service.source_watch` watches the top-level modules and the source packages only.
    """
    uvicorn = [
        sys.executable, "-m", "uvicorn", "main_dramatiq:app",
        "--host", options.api_host, "--port", str(options.api_port),
    ]  # fmt: skip
    if settings.debug:
        return [sys.executable, "-m", "service.source_watch", "--", *uvicorn]
    return uvicorn


def _refuse_if_running(options: StackOptions) -> None:
    previous = StackState.load(options.run_dir)
    if previous is None:
        return
    if any(is_running(record) for record in previous.processes):
        raise StackError(
            f"A stack started by 'make {previous.owner}' is still running ({options.run_dir / 'stack.json'}); "
            "stop it first with 'make down'."
        )
    StackState.forget(options.run_dir)


def _start(
    state: StackState, options: StackOptions, name: str, command: list[str], env: dict[str, str]
) -> ProcessRecord:
    record = start_process(name, command, log_path=options.log_dir / f"{name}.log", cwd=PROJECT_ROOT, env=env)
    state.processes.append(record)
    state.save(options.run_dir)
    return record


def _wait_for_server(state: StackState, record: ProcessRecord, answers: Callable[[], bool]) -> bool:
    """Wait until our server answers. False if it exited because another one took its port meanwhile."""
    started = time.monotonic()
    while time.monotonic() - started < SERVER_READY_SECONDS:
        if answers():
            return True
        if not is_running(record):
            if answers():
                state.processes.remove(record)
                return False
            raise StackError(
                f"{LABELS[record.name]} exited with code {exit_code(record)}; "
                f"end of {_relative(record.log)}:\n{log_tail(record)}"
            )
        time.sleep(_POLL_SECONDS)
    raise StackError(
        f"{LABELS[record.name]} did not answer within {SERVER_READY_SECONDS:.0f} s; "
        f"end of {_relative(record.log)}:\n{log_tail(record)}"
    )


def _ensure_redis(settings: Settings, options: StackOptions, state: StackState) -> None:
    url = settings.redis_url
    if redis_answers(url):
        state.used_existing.append(f"Redis at {redact(url)}")
        say("Redis", f"{redact(url)} already answers: using it (it will be left running)")
        return
    ensure_binaries(["redis-server"])
    directory = options.run_dir / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    executable = shutil.which("redis-server") or "redis-server"
    started = time.monotonic()
    record = _start(state, options, "redis", redis_command(executable, url, directory), dict(os.environ))
    if _wait_for_server(state, record, lambda: redis_answers(url)):
        say(
            "Redis",
            f"started on {redact(url)} (pid {record.pid}, ready in {time.monotonic() - started:.1f} s)",
        )
    else:
        state.used_existing.append(f"Redis at {redact(url)}")
        say("Redis", f"another Redis took {redact(url)} meanwhile: using it")
    state.save(options.run_dir)


def _ensure_influxdb(settings: Settings, options: StackOptions, state: StackState) -> None:
    influx = settings.influxdb
    if influxdb_answers(influx.url):
        state.used_existing.append(f"InfluxDB at {redact(influx.url)}")
        say("InfluxDB", f"{redact(influx.url)} already answers: using it (it will be left running)")
        return
    if influx.version != 1:
        raise StackError(
            f"Nothing answers at {redact(influx.url)}; the stack starts InfluxDB 1.x only, "
            "but INFLUXDB__VERSION is 2: start your InfluxDB 2.x first."
        )
    ensure_binaries(["influxd"])
    directory = (options.run_dir / "influxdb").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    rpc_bind = choose_rpc_bind(options.influxdb_rpc_bind)
    config_path = directory / "influxdb.conf"
    config_path.write_text(influxdb_config(influx.url, directory, rpc_bind=rpc_bind), encoding="utf-8")
    executable = shutil.which("influxd") or "influxd"
    started = time.monotonic()
    record = _start(
        state, options, "influxdb", [executable, "run", "-config", str(config_path)], dict(os.environ)
    )
    if _wait_for_server(state, record, lambda: influxdb_answers(influx.url)):
        say(
            "InfluxDB",
            f"started on {influx.url} (pid {record.pid}, RPC {rpc_bind}, data in {_relative(directory)}, "
            f"ready in {time.monotonic() - started:.1f} s)",
        )
    else:
        state.used_existing.append(f"InfluxDB at {redact(influx.url)}")
        say("InfluxDB", f"another InfluxDB took {redact(influx.url)} meanwhile: using it")
    state.save(options.run_dir)


def _import_meter_file(csv_file: str, options: StackOptions) -> None:
    started = time.monotonic()
    log_path = options.log_dir / "importer.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        completed = subprocess.run(
            [sys.executable, "-m", "forecasting.importer", csv_file],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            check=False,
        )
    if completed.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise StackError(f"Importing {csv_file} failed (exit {completed.returncode}):\n{tail}")
    say("import", f"{completed.stdout.strip()} in {time.monotonic() - started:.1f} s")


def _service_environment(settings: Settings, options: StackOptions) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if settings.log_dir == Settings.model_fields["log_dir"].default:
        # Keep the service's own log files with the stack's, unless LOG_DIR was chosen deliberately.
        env["LOG_DIR"] = str(options.log_dir.resolve())
    return env


def _ensure_port_free(options: StackOptions) -> None:
    client_side = urlsplit(options.api_url)
    if port_is_open(LocalAddress(client_side.hostname or "127.0.0.1", options.api_port)):
        raise StackError(f"Something already listens on {options.api_url}; choose another API_PORT.")


def wait_until_healthy(api_url: str, *, api: ProcessRecord, worker: ProcessRecord) -> None:
    """Poll ``/health/`` and then ``/health/worker`` until both say 200."""
    with httpx.Client(base_url=api_url, timeout=5.0) as client:
        for path, process, limit in (
            ("/health/", api, API_READY_SECONDS),
            ("/health/worker", worker, WORKER_READY_SECONDS),
        ):
            started = time.monotonic()
            last = "no answer yet"
            while True:
                try:
                    reply = client.get(path)
                    if reply.status_code == httpx.codes.OK:
                        break
                    last = f"{reply.status_code} {reply.text[:300]}"
                except httpx.TransportError as error:
                    last = type(error).__name__
                if not is_running(process):
                    raise StackError(
                        f"The {LABELS[process.name]} exited (code {exit_code(process)}); "
                        f"end of {_relative(process.log)}:\n{log_tail(process)}"
                    )
                if time.monotonic() - started > limit:
                    raise StackError(f"{path} not healthy after {limit:.0f} s; last answer: {last}")
                time.sleep(_POLL_SECONDS)
            say("health", f"{path} OK after {time.monotonic() - started:.1f} s")


# -- stopping ------------------------------------------------------------------------------------------
def stop_stack(run_dir: Path = RUN_DIR) -> list[str]:
    """Stop every process recorded in ``run/stack.json``, newest first; returns what was stopped."""
    state = StackState.load(run_dir)
    if state is None:
        return []
    stopped = []
    for record in reversed(state.processes):
        label = LABELS.get(record.name, record.name)
        if stop_process(record, timeout_seconds=STOP_TIMEOUT_SECONDS.get(record.name, 15.0)):
            stopped.append(f"{label} (pid {record.pid})")
        else:
            say("stop", f"{label} (pid {record.pid}) had already exited")
    StackState.forget(run_dir)
    if stopped:
        say("stopped", ", ".join(stopped))
    if state.used_existing:
        say("left", f"running (not started by us): {', '.join(state.used_existing)}")
    return stopped


def _relative(path: str | Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


# -- command line --------------------------------------------------------------------------------------
def _up(options: StackOptions) -> int:
    previous = StackState.load(options.run_dir)
    if previous and previous.owner == "up" and all(is_running(record) for record in previous.processes):
        state = previous
        say("up", "already running (started by an earlier 'make up')")
    else:
        state = start_stack(get_settings(), options, owner="up")
    print(
        f"\nThe stack is up.\n"
        f"  API          {state.api_url}\n"
        f"  API docs     {state.api_url}/docs\n"
        f"  health       {state.api_url}/health/   {state.api_url}/health/worker\n"
        f"  Redis        {state.redis_url}\n"
        f"  InfluxDB     {state.influxdb_url}\n"
        f"  logs, pids   {_relative(options.run_dir)}/ (logs/*.log, stack.json)\n"
        f"Stop it with: make down",
        flush=True,
    )
    return 0


def _down(options: StackOptions) -> int:
    if StackState.load(options.run_dir) is None:
        say("down", f"nothing to stop ({_relative(options.run_dir / 'stack.json')} does not exist)")
        return 0
    stop_stack(options.run_dir)
    return 0


def _status(options: StackOptions) -> int:
    state = StackState.load(options.run_dir)
    if state is None:
        say("status", "not running (no run/stack.json)")
        return 1
    for record in state.processes:
        running = "running" if is_running(record) else "NOT running"
        say(LABELS.get(record.name, record.name), f"pid {record.pid} {running}, log {_relative(record.log)}")
    for existing in state.used_existing:
        say("existing", existing)
    say("API", state.api_url)
    return 0 if all(is_running(record) for record in state.processes) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    arguments = parser.parse_args(argv)
    options = StackOptions.from_environment()
    raise_on_sigterm()
    commands = {"up": _up, "down": _down, "status": _status}
    try:
        return commands[arguments.command](options)
    except (StackError, ServiceError, BootstrapError, ValidationError) as error:
        print(f"\n{arguments.command} failed: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
