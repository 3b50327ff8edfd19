"""Importer: file-name keys, CSV parsing, writes to a real InfluxDB 1.6, CLI, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from config.settings import InfluxSettings, get_settings
from forecasting.errors import SourceQueryError, SourceUnavailableError
from forecasting.importer import import_meter_csv, main, meter_key_from_path, read_meter_csv, write_lines
from tests.service_processes import find_free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EKPC_CSV = PROJECT_ROOT / "data" / "meters" / "electricity__pjm_ekpc.csv"
EKPC_ROWS = 26_353


def _count(settings: InfluxSettings, meter_id: str, meter_type: str = "electricity") -> int:
    """Points stored for a meter, counted by the server itself (independent of the reader)."""
    reply = httpx.post(
        f"{settings.url}/query",
        params={"db": settings.database},
        data={
            "q": 'SELECT COUNT("consumption") FROM "energy_consumption" '
            'WHERE "meter_id" = $meter_id AND "meter_type" = $meter_type',
            "params": json.dumps({"meter_id": meter_id, "meter_type": meter_type}),
        },
        timeout=5,
    )
    series = reply.json()["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def test_meter_key_from_path__reads_type_and_id():
    assert meter_key_from_path(Path("x/heat__dk_660_register.csv")) == ("dk_660_register", "heat")


@pytest.mark.parametrize("name", ["electricity.csv", "__m1.csv", "heat__.csv"])
def test_meter_key_from_path__refuses_other_names(name):
    with pytest.raises(ValueError, match="<meter_type>__<meter_id>"):
        meter_key_from_path(Path(name))


def test_read_meter_csv__utc_index_and_float_values():
    readings = read_meter_csv(EKPC_CSV)

    assert len(readings) == EKPC_ROWS and list(readings.columns) == ["value"]
    assert readings.index[0] == pd.Timestamp("2015-08-01T03:00:00Z")
    assert readings["value"].dtype == "float64" and readings["value"].iloc[0] == 1428.0


def test_import_meter_csv__writes_every_row_under_the_file_name_key(influx_settings):
    written = import_meter_csv(EKPC_CSV, influx_settings, batch_size=5000)

    assert written == EKPC_ROWS
    assert _count(influx_settings, "pjm_ekpc") == EKPC_ROWS


def test_import_meter_csv__twice_overwrites_instead_of_duplicating(influx_settings):
    import_meter_csv(EKPC_CSV, influx_settings, meter_id="again")
    import_meter_csv(EKPC_CSV, influx_settings, meter_id="again", batch_size=7919)

    assert _count(influx_settings, "again") == EKPC_ROWS


def test_import_meter_csv__field_type_conflict_is_a_query_error(influx_settings):
    # Field types are fixed per shard, so the text point must share a shard with the history.
    first_reading_s = 1_438_398_000  # 2015-08-01T03:00:00Z
    write_lines(
        influx_settings,
        [f'energy_consumption,meter_id=m,meter_type=electricity consumption="text" {first_reading_s}'],
    )

    with pytest.raises(SourceQueryError, match="conflict"):
        import_meter_csv(EKPC_CSV, influx_settings, meter_id="m", meter_type="electricity")


def test_import_meter_csv__down_server_is_unavailable(tmp_path):
    settings = InfluxSettings(url=f"http://127.0.0.1:{find_free_port()}", timeout_seconds=2)

    with pytest.raises(SourceUnavailableError, match="unreachable"):
        import_meter_csv(EKPC_CSV, settings)


def _influx_config_file(settings: InfluxSettings, directory: Path) -> Path:
    """A JSON InfluxDB config for the test database (the file form deployments use)."""
    path = directory / "influxdb_config.json"
    path.write_text(json.dumps({"version": 1, "url": settings.url, "database": settings.database}))
    return path


def test_cli__imports_with_settings_from_the_config_file(influx_settings, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith("INFLUXDB__")}
    env["INFLUXDB_CONFIG_FILE"] = str(_influx_config_file(influx_settings, tmp_path))
    completed = subprocess.run(
        [sys.executable, "-m", "forecasting.importer", str(EKPC_CSV), "--meter-id", "cli_meter"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert f"wrote {EKPC_ROWS} rows" in completed.stdout
    assert _count(influx_settings, "cli_meter") == EKPC_ROWS


@pytest.fixture
def env_settings(influx_settings, monkeypatch, tmp_path):
    """Point the process settings at the test database for in-process ``main()`` calls."""
    for key in os.environ:
        if key.upper().startswith("INFLUXDB__"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("INFLUXDB_CONFIG_FILE", str(_influx_config_file(influx_settings, tmp_path)))
    get_settings.cache_clear()
    yield influx_settings
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "arguments", [["--meter-id", "bad id!"], ["--meter-type", "plutonium"], ["--meter-id", "../escape"]]
)
def test_cli__refuses_keys_the_service_would_refuse(env_settings, capsys, arguments):
    exit_code = main([str(EKPC_CSV), *arguments])

    assert exit_code == 1
    error_output = capsys.readouterr().err
    assert "import failed" in error_output
    assert "Invalid meter_id" in error_output or "Unknown meter_type" in error_output
    assert _count(env_settings, "pjm_ekpc") == 0


def test_cli__unparseable_file_name_needs_explicit_key(env_settings, tmp_path):
    csv = tmp_path / "readings.csv"
    csv.write_text("timestamp,value\n2020-01-01T00:00:00Z,1\n")

    with pytest.raises(SystemExit):
        main([str(csv)])
    assert main([str(csv), "--meter-id", "r1", "--meter-type", "gas"]) == 0
    assert _count(env_settings, "r1", "gas") == 1
