"""Flux reader without a 2.x server: query building, escaping, record→frame, connection errors."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
import pytest
from influxdb_client.client.flux_table import FluxRecord, FluxTable
from influxdb_client.rest import ApiException

from config.settings import InfluxSettings
from forecasting.errors import SourceQueryError, SourceUnavailableError
from forecasting.influx_flux import (
    FluxMeterHistory,
    build_flux_query,
    flux_string,
    frame_from_flux_tables,
    translate_client_errors,
)
from tests.service_processes import find_free_port

HOSTILE_IDS = [
    'quo"te',
    "back\\slash",
    "trailing\\",
    "new\nline",
    "' OR 1=1 --",
    '") or true or ("',
    "${interpolated}",
    "../../etc",
    "zähler-Ω-電",
    "x" * 10_000,
]


def _split_literals(query: str) -> tuple[str, list[str]]:
    """The query with each string literal replaced by ``"?"``, and the decoded literals (Flux rules)."""
    skeleton, literals, position = [], [], 0
    escapes = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$"}
    while position < len(query):
        char = query[position]
        if char != '"':
            skeleton.append(char)
            position += 1
            continue
        position += 1
        literal = []
        while query[position] != '"':
            if query[position] == "\\":
                literal.append(escapes[query[position + 1]])
                position += 2
            else:
                assert query[position : position + 2] != "${", "unescaped interpolation"
                literal.append(query[position])
                position += 1
        position += 1
        literals.append("".join(literal))
        skeleton.append('"?"')
    return "".join(skeleton), literals


def test_build_flux_query__filters_the_meter_and_fields():
    query = build_flux_query(InfluxSettings(bucket="energy"), "m-1", "electricity")

    skeleton, literals = _split_literals(query)
    assert literals == [
        "energy",
        "energy_consumption",
        "meter_id",
        "m-1",
        "meter_type",
        "electricity",
        "consumption",
        "temperature",
        "_time",
        "_field",
        "_value",
    ]
    assert "range(start: 1970-01-01T00:00:00Z, stop: 2200-01-01T00:00:00Z)" in skeleton


@pytest.mark.parametrize("meter_id", HOSTILE_IDS)
def test_build_flux_query__hostile_ids_stay_inside_their_literal(meter_id):
    settings = InfluxSettings()
    benign_skeleton, _ = _split_literals(build_flux_query(settings, "m-1", "electricity"))

    skeleton, literals = _split_literals(build_flux_query(settings, meter_id, meter_id))

    assert skeleton == benign_skeleton
    assert literals[3] == meter_id and literals[5] == meter_id


def test_flux_string__escapes_backslash_quote_and_interpolation():
    assert flux_string('a\\b"c${d}') == '"a\\\\b\\"c\\${d}"'


def test_build_flux_query__uses_start_and_end_in_utc():
    start = datetime(2020, 1, 1, 1, 0, tzinfo=UTC)
    end = pd.Timestamp("2020-01-02 03:00", tz="Europe/Amsterdam").to_pydatetime()

    query = build_flux_query(InfluxSettings(), "m", "electricity", start, end)

    assert "range(start: 2020-01-01T01:00:00.000000000Z, stop: 2020-01-02T02:00:00.000000000Z)" in query


def _record(time_text: str, field: str, value: float | None) -> FluxRecord:
    return FluxRecord(
        table=0, values={"_time": pd.Timestamp(time_text).to_pydatetime(), "_field": field, "_value": value}
    )


def test_frame_from_flux_tables__pivots_fields_from_tables():
    consumption, temperature = FluxTable(), FluxTable()
    consumption.records = [
        _record("2020-01-01T01:00:00Z", "consumption", 2.0),
        _record("2020-01-01T00:00:00Z", "consumption", 1.0),
    ]
    temperature.records = [_record("2020-01-01T00:00:00Z", "temperature", -3.5)]

    frame = frame_from_flux_tables([consumption, temperature])

    assert list(frame.columns) == ["value", "temperature"]
    assert frame.index.name == "timestamp" and str(frame.index.tz) == "UTC"
    assert frame["value"].tolist() == [1.0, 2.0]
    assert frame["temperature"].iloc[0] == -3.5 and pd.isna(frame["temperature"].iloc[1])


def test_frame_from_flux_tables__records_without_temperature_give_value_only():
    frame = frame_from_flux_tables(
        [_record("2020-01-01T00:00:00Z", "kwh", 4.0), _record("2020-01-01T00:00:00Z", "other", 9.0)],
        field="kwh",
    )

    assert list(frame.columns) == ["value"]
    assert frame["value"].dtype == "float64" and frame["value"].tolist() == [4.0]


def test_frame_from_flux_tables__accepts_pivoted_records():
    record = FluxRecord(
        table=0, values={"_time": datetime(2020, 1, 1, tzinfo=UTC), "consumption": 5, "temperature": 10.0}
    )

    frame = frame_from_flux_tables([record])

    assert frame.loc[pd.Timestamp("2020-01-01", tz="UTC")].tolist() == [5.0, 10.0]


def test_frame_from_flux_tables__nothing_gives_empty_frame_with_shape():
    frame = frame_from_flux_tables([])

    assert frame.empty and list(frame.columns) == ["value"]
    assert isinstance(frame.index, pd.DatetimeIndex) and str(frame.index.tz) == "UTC"


def test_translate_client_errors__client_errors_are_query_errors():
    with pytest.raises(SourceQueryError, match="HTTP 401"), translate_client_errors("http://u:secret@h:1"):
        raise ApiException(status=401, reason="Unauthorized")


def test_translate_client_errors__server_errors_are_unavailable_and_hide_credentials():
    with pytest.raises(SourceUnavailableError) as caught, translate_client_errors("http://u:secret@h:1"):
        raise ApiException(status=503, reason="Service Unavailable")

    assert "secret" not in str(caught.value) and "http://h:1" in str(caught.value)


def test_flux_reader__unused_port_is_unavailable_quickly():
    settings = InfluxSettings(
        version=2, url=f"http://127.0.0.1:{find_free_port()}", token="t", org="o", timeout_seconds=2
    )
    history = FluxMeterHistory(settings)
    started = time.monotonic()
    try:
        with pytest.raises(SourceUnavailableError, match=r"127\.0\.0\.1"):
            history.fetch("m-1", "electricity")
        with pytest.raises(SourceUnavailableError):
            history.ping()
    finally:
        history.close()
    assert time.monotonic() - started < 5
