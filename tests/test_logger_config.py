"""Every process logs one format to console and file, with context, levels, JSON mode and redaction."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

import logger_config
from config.settings import Settings
from logger_config import LIBRARY_LOGGERS, QUIET_LOGGERS, configure_logging, create_log_file

LINE = re.compile(
    r"^(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) \| (?P<level>[A-Z]{4,8}) {0,4} \| "
    r"(?P<logger>\S.{19,}?) \| (?P<event>.+?)(?: \| (?P<context>.*))?$"
)


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put the root logger, library loggers and structlog back as they were after each test."""
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(logger_config, "_active_log_file", None)
    root = logging.getLogger()
    root_handlers, root_level = root.handlers[:], root.level
    touched = {name: logging.getLogger(name) for name in (*LIBRARY_LOGGERS, *QUIET_LOGGERS)}
    saved = {name: (lg.handlers[:], lg.level, lg.propagate) for name, lg in touched.items()}
    yield
    for handler in root.handlers[:]:
        if handler not in root_handlers:
            handler.close()
    root.handlers[:] = root_handlers
    root.setLevel(root_level)
    for name, (handlers, level, propagate) in saved.items():
        touched[name].handlers[:] = handlers
        touched[name].setLevel(level)
        touched[name].propagate = propagate
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(log_dir=tmp_path / "logs", **overrides)


def file_lines(log_file: Path) -> list[str]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return log_file.read_text(encoding="utf-8").splitlines()


def test_configure_logging__creates_dated_file_in_new_log_dir(tmp_path: Path) -> None:
    log_file = configure_logging(settings_for(tmp_path))

    assert log_file.parent == (tmp_path / "logs").resolve()
    assert re.fullmatch(r"energy_forecasting_\d{8}_\d{6}\.log", log_file.name)
    stamp = datetime.strptime(log_file.name[19:34], "%Y%m%d_%H%M%S").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_create_log_file__same_second_gets_a_pid_file_instead_of_sharing(tmp_path: Path) -> None:
    started = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)

    first = create_log_file(tmp_path, started)
    second = create_log_file(tmp_path, started)
    third = create_log_file(tmp_path, started)

    assert first.name == "energy_forecasting_20240115_103000.log"
    assert second.name == f"energy_forecasting_20240115_103000_{os.getpid()}.log"
    assert third.name == f"energy_forecasting_20240115_103000_{os.getpid()}_2.log"
    assert all(path.exists() for path in (first, second, third))


def test_line__has_time_level_logger_event_and_sorted_context(tmp_path: Path) -> None:
    log_file = configure_logging(settings_for(tmp_path))

    structlog.get_logger("task.train_model").info(
        "Starting model training task", task_id="abc123", meter_type="electricity", meter_id="meter_001"
    )

    line = file_lines(log_file)[-1]
    assert re.fullmatch(
        r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \| INFO     \| task\.train_model     \| "
        r"Starting model training task \| meter_id=meter_001 meter_type=electricity task_id=abc123",
        line,
    )
    logged_at = datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - logged_at).total_seconds()) < 60  # UTC, not local time


def test_line__quotes_values_with_spaces_and_keeps_clashing_keys(tmp_path: Path) -> None:
    log_file = configure_logging(settings_for(tmp_path))

    structlog.get_logger("api").warning("Odd input", detail='two words and "quotes"', name="meter")

    context = LINE.match(file_lines(log_file)[-1]).group("context")
    assert context == 'detail="two words and \\"quotes\\"" name_=meter'


def test_contextvars__appear_on_structlog_and_library_lines(tmp_path: Path) -> None:
    log_file = configure_logging(settings_for(tmp_path))
    structlog.contextvars.bind_contextvars(task_id="abc123", meter_id="meter_001")

    structlog.get_logger("task.train_model").info("Loading history")
    logging.getLogger("dramatiq.worker").info("Worker picked up %s", "message-1")

    ours, library = file_lines(log_file)[-2:]
    assert ours.endswith("| Loading history | meter_id=meter_001 task_id=abc123")
    assert library.endswith("| Worker picked up message-1 | meter_id=meter_001 task_id=abc123")


def test_library_logger__uses_same_format_and_uvicorn_handlers_are_replaced(tmp_path: Path) -> None:
    uvicorn_own = logging.StreamHandler(io.StringIO())
    logging.getLogger("uvicorn.access").addHandler(uvicorn_own)
    logging.getLogger("uvicorn.access").propagate = False
    log_file = configure_logging(settings_for(tmp_path))

    logging.getLogger("dramatiq.worker").info("Worker process is ready", extra={"color_message": "\x1b[1m"})
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /health HTTP/1.1" 200')

    dramatiq_line, access_line = file_lines(log_file)[-2:]
    match = LINE.match(dramatiq_line)
    assert match is not None
    assert (match["level"], match["logger"].rstrip(), match["event"]) == (
        "INFO",
        "dramatiq.worker",
        "Worker process is ready",
    )
    assert match["context"] is None  # uvicorn-style color_message is not context
    assert LINE.match(access_line)["logger"].rstrip() == "uvicorn.access"
    assert uvicorn_own.stream.getvalue() == ""


@pytest.mark.parametrize("debug", [False, True])
def test_debug_setting__decides_whether_debug_lines_are_written(tmp_path: Path, debug: bool) -> None:
    log_file = configure_logging(settings_for(tmp_path, debug=debug))

    structlog.get_logger("task.train_model").debug("Trial finished", trial=1)
    logging.getLogger("dramatiq.worker").debug("Polling queue")
    structlog.get_logger("task.train_model").info("Training finished")

    text = "\n".join(file_lines(log_file))
    assert ("Trial finished" in text) is debug
    assert ("Polling queue" in text) is debug
    assert "Training finished" in text


def test_quiet_libraries__only_warnings_get_through(tmp_path: Path) -> None:
    log_file = configure_logging(settings_for(tmp_path, debug=True))

    logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1:8086/query")
    logging.getLogger("urllib3.connectionpool").warning("Retrying connection")

    text = "\n".join(file_lines(log_file))
    assert "HTTP Request" not in text
    assert "Retrying connection" in text


def test_json_format__every_line_is_an_object_with_fields_and_context(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = configure_logging(settings_for(tmp_path, log_format="json"))
    structlog.contextvars.bind_contextvars(task_id="abc123")

    structlog.get_logger("task.train_model").info("Starting model training task", meter_id="meter_001")
    logging.getLogger("dramatiq.worker").error("Worker crashed")

    records = [json.loads(line) for line in file_lines(log_file)]
    ours, library = records[-2:]
    assert ours["event"] == "Starting model training task"
    assert (ours["level"], ours["logger"]) == ("info", "task.train_model")
    assert (ours["meter_id"], ours["task_id"]) == ("meter_001", "abc123")
    assert (library["level"], library["logger"], library["task_id"]) == ("error", "dramatiq.worker", "abc123")
    stamp = datetime.fromisoformat(ours["timestamp"])
    assert stamp.utcoffset().total_seconds() == 0
    console = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert console[-1]["event"] == "Worker crashed"


def test_exception__traceback_follows_the_line(tmp_path: Path) -> None:
    log_file = configure_logging(settings_for(tmp_path))

    try:
        raise ValueError("bad window")
    except ValueError:
        structlog.get_logger("task.train_model").exception("Training failed", meter_id="m1")

    text = "\n".join(file_lines(log_file))
    assert "| ERROR    | task.train_model     | Training failed | meter_id=m1\nTraceback" in text
    assert "ValueError: bad window" in text


def test_secrets__are_redacted_on_structlog_and_library_lines(tmp_path: Path) -> None:
    log_file = configure_logging(settings_for(tmp_path))

    structlog.get_logger("api").info(
        "Connecting",
        password="hunter2",
        influx_token="tok-123",
        api_key="key-456",
        headers={"Authorization": "Bearer abc"},
        url="http://127.0.0.1:8086",
    )
    logging.getLogger("dramatiq.worker").info("Broker ready", extra={"redis_password": "pw-789"})

    text = "\n".join(file_lines(log_file))
    for secret in ("hunter2", "tok-123", "key-456", "Bearer abc", "pw-789"):
        assert secret not in text
    assert "password=*** " in text
    assert "redis_password=***" in text
    assert "url=http://127.0.0.1:8086" in text


def test_configure_twice__replaces_handlers_and_keeps_the_file(tmp_path: Path) -> None:
    first = configure_logging(settings_for(tmp_path))
    second = configure_logging(settings_for(tmp_path, debug=True))

    structlog.get_logger("api").info("Once")

    assert first == second
    assert len(logging.getLogger().handlers) == 2
    assert sum(line.endswith("| Once") for line in file_lines(second)) == 1


def test_console__plain_when_not_a_tty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(settings_for(tmp_path))

    structlog.get_logger("api").warning("Disk almost full", free_mb=12)

    line = capsys.readouterr().err.splitlines()[-1]
    assert "\x1b[" not in line
    assert LINE.match(line)["context"] == "free_mb=12"


def test_console__coloured_on_a_tty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    log_file = configure_logging(settings_for(tmp_path))

    structlog.get_logger("api").warning("Disk almost full")

    assert "\x1b[33mWARNING" in terminal.getvalue()
    assert "\x1b[" not in "\n".join(file_lines(log_file))
