"""Route every log line of a process, ours and the libraries', to one console and one file.

Why one path: structlog loggers render their event into stdlib keyword arguments
(``structlog.stdlib.render_to_log_kwargs``), so a structlog event becomes a plain ``LogRecord`` with
the context as record attributes. From there structlog events and records of library loggers
(uvicorn, dramatiq) meet the same handlers, the same filter (contextvars, redaction) and the same
formatter, and come out identically. Time and level are taken from the record itself for that
reason, rather than added by structlog processors that library records never pass through.

Line format (console mode), timestamps in UTC so the API's and workers' files line up across hosts::

    2024-01-15 10:30:00 | INFO     | task.train_model     | Starting model training task | meter_id=m1 task_id=abc

Context keys are sorted; values containing spaces, quotes or ``=`` are JSON-quoted. In ``json`` mode
each line is one JSON object (``timestamp`` ISO-8601 UTC, ``level``, ``logger``, ``event``, context).

Log files: one new file per process start, ``<log_dir>/energy_forecasting_YYYYMMDD_HHMMSS.log`` (UTC).
The file is created exclusively, so two processes starting in the same second never share or
clobber a file: the later one gets ``..._HHMMSS_<pid>.log``. Calling :func:`configure_logging` again
in the same process replaces the handlers and keeps writing to the same file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import colorlog
import structlog

from config.settings import Settings

LOG_FILE_PREFIX = "energy_forecasting_"

# Libraries that install their own handlers (uvicorn's dictConfig); theirs are removed so their
# records propagate to ours and look like every other line.
LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "dramatiq")

# Chatty at INFO/DEBUG (one line per HTTP request or import); only their problems are worth a line.
QUIET_LOGGERS = (
    "httpx",
    "httpcore",
    "urllib3",
    "asyncio",
    "absl",
    "tensorflow",
    "h5py",
    "matplotlib",
    "PIL",
    "python_multipart",
    "multipart",
    "watchdog",  # DEBUG=true's source watcher: a line per inotify event
)

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"password|passwd|token|api[_-]?key|authorization|secret|credential|cookie", re.IGNORECASE
)

_TEXT_FORMAT = "%(asctime)s | %(log_color)s%(levelname)-8s%(reset)s | %(name)-20s | %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_LEVEL_COLOURS = {
    "DEBUG": "cyan",
    "INFO": "green",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "bold_red",
}

# Attributes every LogRecord has; anything else on a record is context. ``color_message`` is
# uvicorn's ANSI copy of its own message, noise in a context list.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_IGNORED_EXTRAS = frozenset({"color_message"})
# Keys render_to_log_kwargs hands to logging as arguments rather than as ``extra``.
_PASSED_THROUGH = frozenset(structlog.stdlib.LOG_KWARG_NAMES) | {"event"}

_HANDLER_MARK = "_energy_forecasting_handler"
_active_log_file: tuple[int, Path, Path] | None = None  # (pid, log_dir, file) of the last configuration


def configure_logging(settings: Settings, *, process_name: str = "api") -> Path:
    """Configure structlog and stdlib logging for this process; call once at the top of an entry point.

    Takes over the root logger: existing root handlers are removed, so nothing else prints a second
    copy of a line. Safe to call again (handlers are replaced, not added).

    Args:
        settings: ``debug`` selects DEBUG over INFO, ``log_format`` console or json, ``log_dir`` the
            folder for the log file (created if missing).
        process_name: Which process this is (``api``, ``worker``); reported in the first log line.

    Returns:
        The path of the log file this process writes.
    """
    log_file = _log_file_for_this_process(Path(settings.log_dir))
    level = logging.DEBUG if settings.debug else logging.INFO

    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        if getattr(handler, _HANDLER_MARK, False):
            handler.close()
    for handler in _build_handlers(settings.log_format, log_file):
        setattr(handler, _HANDLER_MARK, True)
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    root.setLevel(level)

    for name in LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        for handler in library_logger.handlers[:]:
            library_logger.removeHandler(handler)
        library_logger.propagate = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.PositionalArgumentsFormatter(),
            rename_reserved_keys,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger used before configuration must pick up this configuration later.
        cache_logger_on_first_use=False,
    )
    structlog.get_logger("logger_config").info(
        "Logging configured",
        process_name=process_name,
        pid=os.getpid(),
        log_file=str(log_file),
        log_format=settings.log_format,
        log_level=logging.getLevelName(level),
    )
    return log_file


def create_log_file(log_dir: Path, started: datetime) -> Path:
    """Create a new, empty log file named after ``started`` (UTC) and return its path.

    Exclusive creation makes the check-and-create atomic: a process that loses the race for a name
    takes the ``_<pid>`` variant (then ``_<pid>_2``...) instead of appending to another's file.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = LOG_FILE_PREFIX + started.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    candidates = [stem, f"{stem}_{os.getpid()}"]
    attempt = 2
    while True:
        for candidate in candidates:
            path = log_dir / f"{candidate}.log"
            try:
                with path.open("x", encoding="utf-8"):
                    return path
            except FileExistsError:
                continue
        candidates = [f"{stem}_{os.getpid()}_{attempt}"]
        attempt += 1


def redact_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``values`` with every value under a secret-looking key (nested too) replaced by ``***``."""
    redacted: dict[str, Any] = {}
    for key, value in values.items():
        if _SECRET_KEY.search(str(key)):
            redacted[key] = REDACTED
        elif isinstance(value, Mapping):
            redacted[key] = redact_secrets(value)
        else:
            redacted[key] = value
    return redacted


def rename_reserved_keys(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Structlog processor: suffix keys that clash with LogRecord attributes (``name`` → ``name_``).

    ``logging`` raises KeyError when ``extra`` overwrites a record attribute, which would turn an
    innocent ``log.info("x", name=...)`` into a crash.
    """
    clashing = [key for key in event_dict if key in _RECORD_ATTRIBUTES and key not in _PASSED_THROUGH]
    for key in clashing:
        event_dict[f"{key}_"] = event_dict.pop(key)
    return event_dict


class ContextFilter(logging.Filter):
    """Handler filter: add bound contextvars to library records and redact secrets on every record.

    Runs on the handler (in the logging thread), so records of any logger get it, and a structlog
    event's own keys win over contextvars of the same name.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in structlog.contextvars.get_contextvars().items():
            if key not in record.__dict__:
                setattr(record, key, value)
        for key, value in redact_secrets(record_context(record)).items():
            setattr(record, key, value)
        return True


def record_context(record: logging.LogRecord) -> dict[str, Any]:
    """The context of a record: its attributes beyond the standard LogRecord ones."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES and key not in _IGNORED_EXTRAS and not key.startswith("_")
    }


class LineFormatter(colorlog.ColoredFormatter):
    """``time | LEVEL | logger | event | key=value ...``; colour only when the stream is a TTY."""

    converter = time.gmtime

    def __init__(self, *, stream: Any = None, colour: bool = True) -> None:
        super().__init__(
            _TEXT_FORMAT,
            datefmt=_DATE_FORMAT,
            log_colors=_LEVEL_COLOURS,
            stream=stream,
            no_color=not colour,
        )
        self._escapes_by_level: dict[str, Any] = {}

    def _escape_code_map(self, item: str) -> Any:
        # colorlog rebuilds its ~200 escape codes and asks the stream isatty() for every record; both
        # are fixed per formatter and level, and at hundreds of requests/s that was half the cost of
        # each access-log line. Cached per level name (the map is only read).
        codes = self._escapes_by_level.get(item)
        if codes is None:
            codes = self._escapes_by_level[item] = super()._escape_code_map(item)
        return codes

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = record_context(record)
        if not context:
            return line
        pairs = " ".join(f"{key}={_format_value(context[key])}" for key in sorted(context))
        return f"{line} | {pairs}"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line for log aggregation; context keys sit beside the fixed fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record_context(record).items():
            payload[key if key not in payload else f"{key}_"] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def _build_handlers(log_format: str, log_file: Path) -> list[logging.Handler]:
    console = logging.StreamHandler(sys.stderr)
    file = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    if log_format == "json":
        console.setFormatter(JsonLineFormatter())
        file.setFormatter(JsonLineFormatter())
    else:
        console.setFormatter(LineFormatter(stream=sys.stderr))
        file.setFormatter(LineFormatter(colour=False))
    return [console, file]


def _log_file_for_this_process(log_dir: Path) -> Path:
    global _active_log_file
    log_dir = log_dir.resolve()
    if _active_log_file is not None:
        pid, active_dir, active_file = _active_log_file
        if pid == os.getpid() and active_dir == log_dir and active_file.exists():
            return active_file
    log_file = create_log_file(log_dir, datetime.now(UTC))
    _active_log_file = (os.getpid(), log_dir, log_file)
    return log_file


def _format_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or any(char.isspace() or char in '"=' for char in text):
        return json.dumps(text, ensure_ascii=False)
    return text
