"""Meter histories from InfluxDB over the 1.x HTTP ``/query`` API (InfluxQL).

The system this replaces pasted meter ids into query strings and read unchunked answers, which
InfluxDB cuts at 10,000 rows. Here ids travel as bound parameters, identifiers are quoted, and the
answer is read as a stream of chunks, so a history of any length arrives whole without being held
twice in memory. The same API is served by InfluxDB 1.x, by 2.x's compatibility endpoint (with a
DBRP mapping) and by 3.x.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import pandas as pd

from config.settings import InfluxSettings
from forecasting.errors import SourceQueryError, SourceUnavailableError
from forecasting.meter_history import TEMPERATURE_COLUMN, VALUE_COLUMN

INDEX_NAME = "timestamp"


def quote_identifier(name: str) -> str:
    """``name`` as an InfluxQL double-quoted identifier, safe whatever characters it holds."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def build_influxql_query(
    settings: InfluxSettings, *, start: datetime | None = None, end: datetime | None = None
) -> str:
    """The SELECT for one meter; the meter is bound later as ``$meter_id`` and ``$meter_type``.

    Times are integers computed here (nanoseconds since the epoch), never caller text.
    """
    columns = [quote_identifier(settings.field)]
    if settings.temperature_field:
        columns.append(quote_identifier(settings.temperature_field))
    conditions = [
        f"{quote_identifier(settings.meter_id_tag)} = $meter_id",
        f"{quote_identifier(settings.meter_type_tag)} = $meter_type",
    ]
    if start is not None:
        conditions.append(f"time >= {_epoch_ns(start)}")
    if end is not None:
        conditions.append(f"time < {_epoch_ns(end)}")
    return (
        f"SELECT {', '.join(columns)} FROM {quote_identifier(settings.measurement)} "
        f"WHERE {' AND '.join(conditions)}"
    )


def empty_history() -> pd.DataFrame:
    """The frame an unknown meter gets: no rows, the usual index and ``value`` column."""
    index = pd.DatetimeIndex([], tz="UTC", name=INDEX_NAME)
    return pd.DataFrame({VALUE_COLUMN: pd.Series([], dtype="float64", index=index)})


def redact_url(url: str) -> str:
    """``url`` without user info, so error messages never carry a password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class InfluxQLMeterHistory:
    """Reads meter histories through the InfluxQL HTTP API; one instance per process or job."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        self._base_url = settings.url.rstrip("/")
        self._safe_url = redact_url(self._base_url)
        auth = None
        if settings.username:
            auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        self._client = httpx.Client(auth=auth, timeout=httpx.Timeout(settings.timeout_seconds))

    def fetch(
        self, meter_id: str, meter_type: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        """All readings of one meter in ``[start, end)``; see :class:`MeterHistory`."""
        query = build_influxql_query(self._settings, start=start, end=end)
        form = {"q": query, "params": json.dumps({"meter_id": meter_id, "meter_type": meter_type})}
        params = {
            "db": self._settings.database,
            "epoch": "ns",
            "chunked": "true",
            "chunk_size": str(self._settings.chunk_size),
        }
        times: list[int] = []
        values: list[Any] = []
        temperatures: list[Any] = []
        for columns, rows in self._stream_series(params, form):
            time_at = columns.index("time")
            value_at = _index_or_none(columns, self._settings.field)
            temperature_at = _index_or_none(columns, self._settings.temperature_field)
            for row in rows:
                times.append(row[time_at])
                values.append(None if value_at is None else row[value_at])
                temperatures.append(None if temperature_at is None else row[temperature_at])
        return _history_frame(times, values, temperatures)

    def ping(self) -> None:
        """Raise ``SourceUnavailableError`` unless ``GET /ping`` answers 204."""
        try:
            response = self._client.get(f"{self._base_url}/ping")
        except httpx.HTTPError as error:
            raise self._unavailable(error) from error
        if response.status_code != 204:
            raise SourceUnavailableError(
                f"InfluxDB at {self._safe_url} answered /ping with HTTP {response.status_code}."
            )

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    def _stream_series(
        self, params: dict[str, str], form: dict[str, str]
    ) -> Iterator[tuple[list[str], list[list[Any]]]]:
        """(columns, rows) of every series in every chunk of the answer, as they arrive."""
        try:
            with self._client.stream("POST", f"{self._base_url}/query", params=params, data=form) as reply:
                if reply.status_code >= 500:
                    raise SourceUnavailableError(
                        f"InfluxDB at {self._safe_url} failed with HTTP {reply.status_code}: "
                        f"{_server_message(reply.read())}"
                    )
                if reply.status_code >= 400:
                    raise SourceQueryError(
                        f"InfluxDB at {self._safe_url} rejected the query (HTTP {reply.status_code}): "
                        f"{_server_message(reply.read())}"
                    )
                for line in reply.iter_lines():
                    if line.strip():
                        yield from self._series_of_chunk(line)
        except httpx.HTTPError as error:
            raise self._unavailable(error) from error

    def _series_of_chunk(self, line: str) -> Iterator[tuple[list[str], list[list[Any]]]]:
        try:
            chunk = json.loads(line)
        except json.JSONDecodeError as error:
            raise SourceUnavailableError(
                f"InfluxDB at {self._safe_url} sent an unreadable answer: {line[:200]!r}"
            ) from error
        if "error" in chunk:
            raise SourceQueryError(f"InfluxDB at {self._safe_url} rejected the query: {chunk['error']}")
        for result in chunk.get("results", []):
            if "error" in result:
                raise SourceQueryError(f"InfluxDB at {self._safe_url} rejected the query: {result['error']}")
            for series in result.get("series", []):
                yield series["columns"], series.get("values", [])

    def _unavailable(self, error: httpx.HTTPError) -> SourceUnavailableError:
        # The exception text can carry the request URL; only the redacted base URL is reported.
        return SourceUnavailableError(
            f"InfluxDB at {self._safe_url} is unreachable ({type(error).__name__}). "
            "Check that it is running and that the url in the InfluxDB settings is right."
        )


def _index_or_none(columns: list[str], name: str) -> int | None:
    return columns.index(name) if name and name in columns else None


def _history_frame(times: list[int], values: list[Any], temperatures: list[Any]) -> pd.DataFrame:
    if not times:
        return empty_history()
    index = pd.DatetimeIndex(pd.to_datetime(np.asarray(times, dtype="int64"), unit="ns", utc=True))
    index.name = INDEX_NAME
    frame = pd.DataFrame(
        {
            VALUE_COLUMN: np.asarray(values, dtype="float64"),
            TEMPERATURE_COLUMN: np.asarray(temperatures, dtype="float64"),
        },
        index=index,
    )
    if frame[TEMPERATURE_COLUMN].isna().all():
        frame = frame.drop(columns=TEMPERATURE_COLUMN)
    return frame.sort_index(kind="stable")


def _server_message(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text[:500] or "(empty answer)"
    if isinstance(parsed, dict) and "error" in parsed:
        return str(parsed["error"])
    return text[:500]


def _epoch_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch; naive datetimes are taken as UTC."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value)
