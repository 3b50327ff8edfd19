"""Meter histories from InfluxDB 2.x with Flux, through ``influxdb-client``.

InfluxDB 2.x OSS does not bind query parameters, so the meter id and type are written into the
Flux text as string literals, escaped by :func:`flux_string`. Building the query and turning
records into a frame are pure functions, so both are tested without a server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pandas as pd
import urllib3.exceptions
from influxdb_client import InfluxDBClient
from influxdb_client.client.exceptions import InfluxDBError

from config.settings import InfluxSettings
from forecasting.errors import SourceQueryError, SourceUnavailableError
from forecasting.influx_influxql import INDEX_NAME, empty_history, redact_url
from forecasting.meter_history import TEMPERATURE_COLUMN, VALUE_COLUMN

# Flux needs a start; without an end, stop far ahead rather than at now() so clock skew loses nothing.
_EARLIEST = "1970-01-01T00:00:00Z"
_LATEST = "2200-01-01T00:00:00Z"


def flux_string(text: str) -> str:
    """``text`` as a Flux string literal: backslash, double quote and ``${`` interpolation escaped."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("${", "\\${")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def build_flux_query(
    settings: InfluxSettings,
    meter_id: str,
    meter_type: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """The Flux query for one meter's readings in ``[start, end)``, unpivoted (_time, _field, _value)."""
    fields = [settings.field] + ([settings.temperature_field] if settings.temperature_field else [])
    field_test = " or ".join(f"r._field == {flux_string(name)}" for name in fields)
    start_text = _EARLIEST if start is None else _rfc3339(start)
    stop_text = _LATEST if end is None else _rfc3339(end)
    return "\n".join(
        [
            f"from(bucket: {flux_string(settings.bucket)})",
            f"  |> range(start: {start_text}, stop: {stop_text})",
            f"  |> filter(fn: (r) => r._measurement == {flux_string(settings.measurement)}"
            f" and r[{flux_string(settings.meter_id_tag)}] == {flux_string(meter_id)}"
            f" and r[{flux_string(settings.meter_type_tag)}] == {flux_string(meter_type)})",
            f"  |> filter(fn: (r) => {field_test})",
            '  |> keep(columns: ["_time", "_field", "_value"])',
        ]
    )


def frame_from_flux_tables(
    tables_or_records: Iterable[Any], *, field: str = "consumption", temperature_field: str = "temperature"
) -> pd.DataFrame:
    """A history frame (``value``, ``temperature`` when present) from Flux tables or records.

    Accepts ``FluxTable``s (anything with ``.records``) or records (anything with a ``.values``
    dict), either unpivoted (``_field``/``_value``) or already pivoted (one key per field). When
    several series share a timestamp, the last value read wins.
    """
    columns = {field: VALUE_COLUMN, temperature_field: TEMPERATURE_COLUMN}
    readings: dict[str, dict[Any, Any]] = {VALUE_COLUMN: {}, TEMPERATURE_COLUMN: {}}
    for record in _records(tables_or_records):
        values = record.values
        if "_field" in values:
            column = columns.get(values["_field"])
            if column is not None:
                readings[column][values["_time"]] = values.get("_value")
            continue
        for name, column in columns.items():
            if name in values:
                readings[column][values["_time"]] = values[name]
    if not readings[VALUE_COLUMN] and not readings[TEMPERATURE_COLUMN]:
        return empty_history()
    frame = pd.DataFrame(
        {
            column: pd.Series(
                list(by_time.values()), index=pd.to_datetime(list(by_time.keys()), utc=True), dtype="float64"
            )
            for column, by_time in readings.items()
        }
    )
    frame.index.name = INDEX_NAME
    if frame[TEMPERATURE_COLUMN].isna().all():
        frame = frame.drop(columns=TEMPERATURE_COLUMN)
    return frame.sort_index(kind="stable")


@contextmanager
def translate_client_errors(url: str) -> Iterator[None]:
    """Turn ``influxdb-client``/urllib3 failures into the domain's source errors."""
    safe_url = redact_url(url)
    try:
        yield
    except InfluxDBError as error:
        status = getattr(getattr(error, "response", None), "status", None) or getattr(error, "status", None)
        message = _error_message(error)
        if status is None or status >= 500:
            raise SourceUnavailableError(
                f"InfluxDB at {safe_url} failed (HTTP {status}): {message}"
            ) from error
        raise SourceQueryError(
            f"InfluxDB at {safe_url} rejected the request (HTTP {status}): {message}"
        ) from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise SourceUnavailableError(
            f"InfluxDB at {safe_url} is unreachable ({type(error).__name__}). "
            "Check that it is running and that the url in the InfluxDB settings is right."
        ) from error


class FluxMeterHistory:
    """Reads meter histories from an InfluxDB 2.x bucket; one instance per process or job."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        self._client = InfluxDBClient(
            url=settings.url,
            token=settings.token.get_secret_value(),
            org=settings.org or None,
            timeout=int(settings.timeout_seconds * 1000),
        )

    def fetch(
        self, meter_id: str, meter_type: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        """All readings of one meter in ``[start, end)``; see :class:`MeterHistory`."""
        query = build_flux_query(self._settings, meter_id, meter_type, start, end)
        with translate_client_errors(self._settings.url):
            records = self._client.query_api().query_stream(query, org=self._settings.org or None)
            return frame_from_flux_tables(
                records, field=self._settings.field, temperature_field=self._settings.temperature_field
            )

    def ping(self) -> None:
        """Raise ``SourceUnavailableError`` unless the server answers ``/ping``."""
        if not self._client.ping():
            raise SourceUnavailableError(
                f"InfluxDB at {redact_url(self._settings.url)} does not answer /ping."
            )

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()


def _records(tables_or_records: Iterable[Any]) -> Iterator[Any]:
    for item in tables_or_records:
        if hasattr(item, "records"):
            yield from item.records
        else:
            yield item


def _rfc3339(moment: datetime) -> str:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{stamp.microsecond * 1000 + stamp.nanosecond:09d}Z"


def _error_message(error: InfluxDBError) -> str:
    message = getattr(error, "message", None) or str(error)
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(message)
    except (TypeError, ValueError):
        return str(message)[:500]
    return str(parsed.get("message", message))[:500] if isinstance(parsed, dict) else str(message)[:500]
