"""DEBUG reloads watch the project's source and nothing else (.venv/, run/, logs/, models/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from dramatiq_worker import dramatiq_command
from service.source_watch import SourceWatcher

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in (
        "main.py",
        "api/routes.py",
        ".venv/lib/site.py",
        "run/influx.py",
        "logs/x.py",
        "models/m.py",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    return tmp_path


@pytest.fixture
def watcher(project: Path) -> Iterator[SourceWatcher]:
    watcher = SourceWatcher(project, ("api",), quiet_seconds=0.2).start()
    yield watcher
    watcher.stop()


def _changes_after(watcher: SourceWatcher, seconds: float = 1.0) -> list[str]:
    deadline = time.monotonic() + seconds
    found: list[str] = []
    while time.monotonic() < deadline:
        found += watcher.changes()
        time.sleep(0.05)
    return sorted(found)


def test_only_the_top_level_modules_and_the_source_packages_are_watched(
    project: Path, watcher: SourceWatcher
):
    assert watcher.directories == [project, project / "api"]
    for name in (".venv/lib/site.py", "run/influx.py", "logs/x.py", "models/m.py", "api/notes.txt"):
        (project / name).write_text("changed = True\n")
    (project / ".venv" / "lib" / "new.py").write_text("")

    assert _changes_after(watcher) == []

    (project / "main.py").write_text("changed = True\n")
    (project / "api" / "routes.py").write_text("changed = True\n")
    (project / "api" / "new_module.py").write_text("")

    assert _changes_after(watcher) == [
        str(project / "api" / "new_module.py"),
        str(project / "api" / "routes.py"),
        str(project / "main.py"),
    ]


def test_a_burst_of_events_is_handed_out_once_it_is_quiet(project: Path, watcher: SourceWatcher):
    for attempt in range(5):
        (project / "main.py").write_text(f"version = {attempt}\n")
        time.sleep(0.05)
    assert watcher.changes() == []  # still saving

    assert _changes_after(watcher) == [str(project / "main.py")]


def test_the_restarter_runs_the_command_again_on_change_and_stops_it_on_sigterm(project: Path):
    marker = project / "starts.txt"
    child = f"open({str(marker)!r}, 'a').write('start\\n'); import time; time.sleep(60)"
    restarter = (
        "import sys; from pathlib import Path; from service.source_watch import SourceWatcher, run_restarting; "
        f"sys.exit(run_restarting([sys.executable, '-c', {child!r}], SourceWatcher(Path({str(project)!r}), ('api',)).start()))"
    )
    process = subprocess.Popen([sys.executable, "-c", restarter], cwd=PROJECT_DIR)
    try:
        _wait(lambda: marker.exists() and marker.read_text().count("start") == 1)
        (project / "api" / "routes.py").write_text("changed = True\n")
        _wait(lambda: marker.read_text().count("start") == 2)
        (project / "run" / "influx.py").write_text("changed = True\n")
        time.sleep(1.0)
        assert marker.read_text().count("start") == 2, "a change outside the source restarts nothing"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_debug_workers_get_no_dramatiq_watch_over_the_whole_project():
    command = dramatiq_command(Settings(debug=True))

    assert "--watch" not in command and str(PROJECT_DIR) not in command


def _wait(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_watching_the_real_project_needs_a_handful_of_directories():
    watcher = SourceWatcher()

    assert watcher.directories == [
        PROJECT_DIR,
        *(PROJECT_DIR / name for name in ("api", "config", "forecasting", "service")),
    ]
    assert os.sep + ".venv" not in "".join(map(str, watcher.directories))
