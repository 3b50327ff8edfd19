"""Settings sources and the values derived from them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from config.settings import Settings, WorkerSettings


def _config_file(tmp_path: Path, **influx: object) -> Path:
    path = tmp_path / "influx.json"
    path.write_text(json.dumps({"_comment": "ignored", **influx}), encoding="utf-8")
    return path


def test_influx_config_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config_file(tmp_path, url="http://127.0.0.1:9999", database="from_file")
    monkeypatch.setenv("INFLUXDB_CONFIG_FILE", str(path))
    monkeypatch.setenv("INFLUXDB__DATABASE", "from_env")

    settings = Settings(_env_file=None)

    assert settings.influxdb.url == "http://127.0.0.1:9999"
    assert settings.influxdb.database == "from_env", "the environment overrides the file"


def test_influx_config_file_as_a_keyword_and_from_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INFLUXDB_CONFIG_FILE", raising=False)
    monkeypatch.delenv("INFLUXDB__DATABASE", raising=False)
    by_keyword = _config_file(tmp_path, database="by_keyword")
    dotenv_dir = tmp_path / "dotenv"
    dotenv_dir.mkdir()
    by_dotenv = _config_file(dotenv_dir, database="by_dotenv")
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"INFLUXDB_CONFIG_FILE={by_dotenv}\n", encoding="utf-8")

    assert Settings(_env_file=None, influxdb_config_file=by_keyword).influxdb.database == "by_keyword"
    assert Settings(_env_file=dotenv).influxdb.database == "by_dotenv"


def test_missing_config_file_leaves_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUXDB_CONFIG_FILE", str(tmp_path / "absent.json"))
    monkeypatch.delenv("INFLUXDB__DATABASE", raising=False)

    assert Settings(_env_file=None).influxdb.database == "energy"


def test_tensorflow_threads_share_the_cores_among_worker_processes() -> None:
    cores = len(os.sched_getaffinity(0))

    assert WorkerSettings(processes=1).tensorflow_threads == cores
    assert WorkerSettings(processes=2).tensorflow_threads == max(1, cores // 2)
    assert WorkerSettings(processes=cores * 4).tensorflow_threads == 1
    assert WorkerSettings(processes=2, tf_threads=3).tensorflow_threads == 3
