"""Reload on source changes (DEBUG=true) without watching ``.venv/``, ``run/``, ``logs/`` or ``models/``.

Dramatiq's ``--watch DIR`` and uvicorn's ``--reload-dir DIR`` each watch whole directory trees, and
the only tree that holds all of this project's source is the project folder — which also holds
``.venv/`` (~190,000 folders), ``run/`` (InfluxDB's data), ``logs/`` and ``models/``. Watched through
inotify, that tree exhausts the kernel's watch limit (``fs.inotify.max_user_watches``, often 8,192);
polled, it costs a CPU core; and files written under it (a pip install, a model) reload the workers.
Dramatiq's ``--watch-exclude`` patterns only filter events: the tree is still walked and watched.

:class:`SourceWatcher` watches only the source: the project folder's own ``*.py`` files (not its
subfolders) and the source packages (:data:`SOURCE_PACKAGES`), through inotify (a handful of
watches, no polling). ``dramatiq_worker.py`` uses it to reload its workers;
``python -m service.source_watch -- <command>`` restarts any command when the source changes, which
is how ``make up`` runs the API with DEBUG=true.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import watchdog.events
import watchdog.observers

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The packages that hold the service's code (``tests/`` and ``scripts/`` are not run by it).
SOURCE_PACKAGES = ("api", "config", "forecasting", "service")
#: An editor's save is several events (write, chmod, rename): reload once they stop for this long.
QUIET_SECONDS = 0.3
#: How long a restarted command gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT_SECONDS = 15.0


class _PythonFileChanges(watchdog.events.FileSystemEventHandler):
    def __init__(self, watcher: SourceWatcher) -> None:
        super().__init__()
        self._watcher = watcher

    def on_any_event(self, event: watchdog.events.FileSystemEvent) -> None:
        # Reading a file is no change (watchdog reports opens and closes without writes too).
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        # An editor may save by writing a temporary file and renaming it over the module.
        for path in (os.fsdecode(event.dest_path), os.fsdecode(event.src_path)):
            if path.endswith(".py"):
                self._watcher.note(path)
                return


class SourceWatcher:
    """Collects changed ``*.py`` files of the project's own source; :meth:`changes` hands them out."""

    def __init__(
        self,
        root: Path = PROJECT_ROOT,
        packages: Sequence[str] = SOURCE_PACKAGES,
        *,
        quiet_seconds: float = QUIET_SECONDS,
    ) -> None:
        self.root = root
        self.directories = [root, *(root / package for package in packages if (root / package).is_dir())]
        self._quiet_seconds = quiet_seconds
        self._changed: set[str] = set()
        self._last_change = 0.0
        self._lock = threading.Lock()
        self._observer = watchdog.observers.Observer()
        handler = _PythonFileChanges(self)
        self._observer.schedule(handler, str(root), recursive=False)
        for directory in self.directories[1:]:
            self._observer.schedule(handler, str(directory), recursive=True)

    def start(self) -> SourceWatcher:
        self._observer.start()
        return self

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def note(self, path: str) -> None:
        with self._lock:
            self._changed.add(path)
            self._last_change = time.monotonic()

    def changes(self) -> list[str]:
        """The files changed since the last call, once quiet for a moment; else an empty list."""
        with self._lock:
            if not self._changed or time.monotonic() - self._last_change < self._quiet_seconds:
                return []
            changed, self._changed = sorted(self._changed), set()
        return changed


def run_restarting(command: Sequence[str], watcher: SourceWatcher, *, poll_seconds: float = 0.2) -> int:
    """Run ``command``; restart it whenever the source changes; stop it on SIGTERM or SIGINT.

    A command that exits by itself (a syntax error at import) is started again on the next change.
    """
    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    child = subprocess.Popen(command)
    while not stopping.wait(poll_seconds):
        changed = watcher.changes()
        if not changed:
            continue
        shown = ", ".join(os.path.relpath(path, watcher.root) for path in changed[:5])
        print(f"source_watch: {shown} changed; restarting {command[0]}", file=sys.stderr, flush=True)
        _stop_child(child)
        child = subprocess.Popen(command)
    _stop_child(child)
    return 0


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m service.source_watch -- <command> [args...]``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = arguments[1:] if arguments[:1] == ["--"] else arguments
    if not command:
        print("usage: python -m service.source_watch -- <command> [args...]", file=sys.stderr)
        return 2
    watcher = SourceWatcher().start()
    try:
        return run_restarting(command, watcher)
    finally:
        watcher.stop()


if __name__ == "__main__":
    sys.exit(main())
