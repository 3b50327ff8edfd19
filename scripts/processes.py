"""Start background processes that outlive their starter, and later stop exactly those.

``make up`` returns while the servers keep running, and ``make down`` runs in another process, so
each started process is written to ``run/stack.json`` with its pid and the kernel's start time of
that pid: a pid reused by an unrelated program after a reboot has another start time and is never
signalled. Each process leads its own session, so its children (the worker's Dramatiq processes)
can be found and stopped with it, and a Ctrl-C in the terminal reaches only the script in front.

Standard library only: ``make down`` must work whatever state the venv is in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE_NAME = "stack.json"
_POLL_SECONDS = 0.1
# Popen objects of processes this interpreter started, so they are reaped (no zombies) while waiting.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class ProcessRecord:
    """One started process: enough to recognise it and stop it from another process later."""

    name: str
    pid: int
    start_ticks: int
    command: list[str]
    log: str


@dataclass
class StackState:
    """What a ``make up`` or ``make demo`` started and which existing services it used instead."""

    owner: str
    api_url: str = ""
    redis_url: str = ""
    influxdb_url: str = ""
    used_existing: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        temporary = run_dir / f"{STATE_FILE_NAME}.tmp"
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        temporary.replace(run_dir / STATE_FILE_NAME)

    @classmethod
    def load(cls, run_dir: Path) -> StackState | None:
        path = run_dir / STATE_FILE_NAME
        if not path.is_file():
            return None
        content: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        records = [ProcessRecord(**record) for record in content.pop("processes", [])]
        return cls(**content, processes=records)

    @staticmethod
    def forget(run_dir: Path) -> None:
        (run_dir / STATE_FILE_NAME).unlink(missing_ok=True)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (field 3, the state, comes first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return text.rpartition(")")[2].split()


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 of stat: start time in clock ticks


def _is_live(pid: int, start_ticks: int | None = None) -> bool:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return False
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return start_ticks is None or int(fields[19]) == start_ticks


def _session_members(session_id: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[3]) == session_id and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def start_process(
    name: str,
    command: Sequence[str],
    *,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str],
) -> ProcessRecord:
    """Start ``command`` in a new session with stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[process.pid] = process
    return ProcessRecord(
        name=name,
        pid=process.pid,
        start_ticks=_start_ticks(process.pid) or 0,
        command=list(command),
        log=str(log_path),
    )


def is_running(record: ProcessRecord) -> bool:
    """True while the recorded process (not merely its pid) is alive."""
    return _is_live(record.pid, record.start_ticks)


def exit_code(record: ProcessRecord) -> int | None:
    """Exit code of a process this interpreter started, once it has exited."""
    child = _children.get(record.pid)
    return None if child is None else child.poll()


def stop_process(record: ProcessRecord, *, timeout_seconds: float) -> bool:
    """SIGTERM the process, wait for it and its session, SIGKILL what is left. False if it was gone."""
    if not is_running(record):
        # A dead leader's session id may belong to someone else by now: touch nothing.
        _children.pop(record.pid, None)
        return False
    _signal(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        leader_gone = not is_running(record)
        if leader_gone and not _session_members(record.pid):
            break
        time.sleep(_POLL_SECONDS)
    else:
        # Only processes of the session this script created (session id == recorded pid) are killed.
        if is_running(record):
            _signal(record.pid, signal.SIGKILL)
        for pid in _session_members(record.pid):
            _signal(pid, signal.SIGKILL)
    child = _children.pop(record.pid, None)
    if child is not None:
        child.wait()
    return True


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def log_tail(record: ProcessRecord, lines: int = 25) -> str:
    try:
        text = Path(record.log).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
