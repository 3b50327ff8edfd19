"""The API must start in well under 2 s, so building it must never import TensorFlow (seconds, 100s of MB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
HEAVY_MODULES = ("tensorflow", "keras", "keras_tuner")


def test_importing_the_api_imports_no_tensorflow(tmp_path: Path) -> None:
    probe = (
        "import sys, main_dramatiq\n"
        f"print(','.join(name for name in {HEAVY_MODULES!r} if name in sys.modules))\n"
    )
    env = {**os.environ, "LOG_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"}

    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the API imported {done.stdout.strip()}"
