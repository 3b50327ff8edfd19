"""How ``make up`` starts the API: plain uvicorn, or restarted on source changes with DEBUG=true."""

from __future__ import annotations

import sys

from config.settings import Settings
from scripts.stack import StackOptions, api_command

UVICORN = [sys.executable, "-m", "uvicorn", "main_dramatiq:app", "--host", "127.0.0.1", "--port", "8123"]


def test_the_api_is_plain_uvicorn_without_debug() -> None:
    assert api_command(Settings(debug=False), StackOptions(api_port=8123)) == UVICORN


def test_debug_restarts_the_api_on_source_changes_without_watching_the_whole_project() -> None:
    command = api_command(Settings(debug=True), StackOptions(api_port=8123))

    assert command == [sys.executable, "-m", "service.source_watch", "--", *UVICORN]
    assert "--reload" not in command, "uvicorn's reloader would list every file under .venv/"
