"""InfluxQL reader against a real InfluxDB 1.6: completeness, filters, hostile ids, failures."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from config.settings import InfluxSettings
from forecasting.errors import SourceQueryError, SourceUnavailableError
from forecasting.importer import import_meter_csv, read_meter_csv, write_lines
from forecasting.influx_influxql import InfluxQLMeterHistory
from forecasting.line_protocol import format_point
from tests.service_processes import InfluxServer, find_free_port

EKPC_CSV = Path(__file__).resolve().parents[2] / "data" / "meters" / "electricity__pjm_ekpc.csv"
EKPC_ROWS = 26_353

HOSTILE_IDS = [
    'quo"te',
    "back\\slash",
    "trailing\\",
    "new\nline",
    "' OR 1=1 --",
    '" OR "1"="1',
    "$meter_id",
    "../../etc/passwd",
    "zähler-Ω-電",
    "x" * 10_000,
]


@pytest.fixture(scope="module")
def ekpc_settings(influxdb_server: InfluxServer) -> InfluxSettings:
    """A database holding the real 26k-row EKPC history as meter ``pjm_ekpc`` (imported once)."""
    settings = InfluxSettings(url=influxdb_server.url, database="reader_ekpc", timeout_seconds=5.0)
    assert import_meter_csv(EKPC_CSV, settings) == EKPC_ROWS
    return settings


@pytest.fixture
def ekpc_history(
    ekpc_settings: InfluxSettings, influxdb_server: InfluxServer
) -> Iterator[InfluxQLMeterHistory]:
    influxdb_server.start()  # revive it if an outage test left it stopped
    history = InfluxQLMeterHistory(ekpc_settings)
    yield history
    history.close()


@pytest.mark.parametrize("chunk_size", [10_000, 997])
def test_fetch__returns_every_row_of_a_long_history(ekpc_settings, chunk_size):
    expected = read_meter_csv(EKPC_CSV)
    history = InfluxQLMeterHistory(ekpc_settings.model_copy(update={"chunk_size": chunk_size}))

    readings = history.fetch("pjm_ekpc", "electricity")
    history.close()

    assert len(readings) == EKPC_ROWS
    assert readings.index[0] == pd.Timestamp("2015-08-01T03:00:00Z")
    assert readings.index[-1] == expected.index[-1]
    assert readings.index.is_monotonic_increasing and readings.index.name == "timestamp"
    assert readings["value"].dtype == "float64"
    assert list(readings.columns) == ["value"]  # no temperature was written
    pd.testing.assert_series_equal(readings["value"], expected["value"], check_freq=False)
    assert readings.loc["2018-01-02T12:00:00Z", "value"] == 3431.0


def test_fetch__start_inclusive_end_exclusive(ekpc_history):
    start = datetime(2016, 1, 1, tzinfo=UTC)

    readings = ekpc_history.fetch(
        "pjm_ekpc", "electricity", start=start, end=datetime(2016, 1, 2, tzinfo=UTC)
    )

    assert len(readings) == 24
    assert readings.index[0] == pd.Timestamp(start)
    assert readings.index[-1] == pd.Timestamp("2016-01-01T23:00:00Z")


def test_fetch__open_ended_ranges(ekpc_history):
    since = ekpc_history.fetch("pjm_ekpc", "electricity", start=datetime(2018, 8, 3, 0, tzinfo=UTC))
    until = ekpc_history.fetch("pjm_ekpc", "electricity", end=datetime(2015, 8, 1, 5, tzinfo=UTC))

    assert len(since) == 4  # 00:00 .. 03:00 on the last day
    assert list(until.index.hour) == [3, 4]


@pytest.mark.parametrize(("meter_id", "meter_type"), [("no_such_meter", "electricity"), ("pjm_ekpc", "gas")])
def test_fetch__unknown_meter_gives_empty_frame_with_shape(ekpc_history, meter_id, meter_type):
    readings = ekpc_history.fetch(meter_id, meter_type)

    assert readings.empty and list(readings.columns) == ["value"]
    assert isinstance(readings.index, pd.DatetimeIndex) and str(readings.index.tz) == "UTC"
    assert readings.index.name == "timestamp"


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_fetch__hostile_ids_match_nothing_and_do_not_error(ekpc_history, hostile):
    assert ekpc_history.fetch(hostile, "electricity").empty
    assert ekpc_history.fetch("pjm_ekpc", hostile).empty


def test_fetch__reads_back_stored_ids_with_awkward_characters(influx_settings):
    awkward_ids = [
        'quo"te',
        "' OR 1=1 --",
        "back\\slash",
        "../../etc",
        "zähler-Ω-電",
        "a,b=c d",
        "y" * 10_000,
    ]
    lines = [
        format_point(influx_settings.measurement, {"meter_id": meter_id, "meter_type": "electricity"},
                     {"consumption": float(position)}, 1_600_000_000 + position)
        for position, meter_id in enumerate(awkward_ids)
    ]  # fmt: skip
    write_lines(influx_settings, lines)
    history = InfluxQLMeterHistory(influx_settings)

    for position, meter_id in enumerate(awkward_ids):
        readings = history.fetch(meter_id, "electricity")
        assert readings["value"].tolist() == [float(position)], meter_id
    history.close()


def test_fetch__includes_temperature_when_written(influx_settings, tmp_path):
    csv = tmp_path / "heat__t1.csv"
    csv.write_text(
        "timestamp,value,temperature\n"
        "2020-01-01T00:00:00Z,1.5,-2.0\n"
        "2020-01-01T01:00:00Z,2.5,\n"
        "2020-01-01T02:00:00Z,3.5,-1.0\n"
    )
    import_meter_csv(csv, influx_settings)
    history = InfluxQLMeterHistory(influx_settings)

    readings = history.fetch("t1", "heat")
    history.close()

    assert list(readings.columns) == ["value", "temperature"]
    assert readings["value"].tolist() == [1.5, 2.5, 3.5]
    assert readings["temperature"].iloc[[0, 2]].tolist() == [-2.0, -1.0]
    assert pd.isna(readings["temperature"].iloc[1])


def test_fetch__unknown_database_is_a_query_error(influx_settings):
    history = InfluxQLMeterHistory(influx_settings)  # its database was never created

    with pytest.raises(SourceQueryError, match="database not found"):
        history.fetch("m", "electricity")
    history.close()


def test_ping__answers_when_up(ekpc_history):
    ekpc_history.ping()  # raises if not


def test_unused_port__unavailable_quickly_without_leaking_the_password():
    settings = InfluxSettings(
        url=f"http://127.0.0.1:{find_free_port()}", username="reader", password="s3cret-pw", timeout_seconds=2
    )
    history = InfluxQLMeterHistory(settings)
    started = time.monotonic()

    with pytest.raises(SourceUnavailableError) as fetch_error:
        history.fetch("m", "electricity")
    with pytest.raises(SourceUnavailableError) as ping_error:
        history.ping()
    history.close()

    assert time.monotonic() - started < 2
    for error in (fetch_error, ping_error):
        assert settings.url in str(error.value) and "s3cret-pw" not in str(error.value)


def test_silent_server__times_out_as_unavailable():
    # Accepts connections (kernel backlog) but never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        settings = InfluxSettings(url=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_seconds=0.5)
        history = InfluxQLMeterHistory(settings)
        started = time.monotonic()

        with pytest.raises(SourceUnavailableError, match="Timeout"):
            history.fetch("m", "electricity")
        history.close()

    assert time.monotonic() - started < 3


@pytest.fixture
def status_server() -> Iterator[tuple[str, dict[str, int]]]:
    """An HTTP server answering every request with the status in ``state["status"]``."""
    state = {"status": 500}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b'{"error":"server says no"}'
            self.send_response(state["status"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(503, SourceUnavailableError), (500, SourceUnavailableError), (401, SourceQueryError)],
)
def test_http_errors_are_classified(status_server, status, error_class):
    url, state = status_server
    state["status"] = status
    history = InfluxQLMeterHistory(InfluxSettings(url=url, timeout_seconds=2))

    with pytest.raises(error_class, match="server says no"):
        history.fetch("m", "electricity")
    history.close()


def test_stopped_server__unavailable_then_data_survives_restart(influxdb_server, ekpc_history):
    influxdb_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(SourceUnavailableError):
            ekpc_history.fetch("pjm_ekpc", "electricity")
        with pytest.raises(SourceUnavailableError):
            ekpc_history.ping()
        assert time.monotonic() - started < 2
    finally:
        influxdb_server.start()

    assert len(ekpc_history.fetch("pjm_ekpc", "electricity")) == EKPC_ROWS
