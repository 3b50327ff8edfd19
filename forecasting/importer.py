"""Load a meter CSV (``timestamp,value[,temperature]``) into InfluxDB.

Developers and tests need real histories in a real InfluxDB; this writes them in the schema the
readers expect (measurement, meter tags and field names from the InfluxDB settings), in batches so
a multi-year history is a handful of requests.

    python -m forecasting.importer data/meters/electricity__pjm_ekpc.csv [--meter-id ID --meter-type TYPE]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from config.settings import InfluxSettings, get_settings
from forecasting.errors import ForecastingError, SourceQueryError, SourceUnavailableError
from forecasting.influx_influxql import quote_identifier, redact_url
from forecasting.line_protocol import format_point
from forecasting.meter_history import TEMPERATURE_COLUMN, VALUE_COLUMN
from forecasting.meter_key import check_meter_id, check_meter_type
from forecasting.timestamps import parse_local_timestamps

DEFAULT_BATCH_SIZE = 5000
_FILE_NAME_SEPARATOR = "__"


def meter_key_from_path(path: Path) -> tuple[str, str]:
    """``(meter_id, meter_type)`` from a file named ``<meter_type>__<meter_id>.csv``."""
    meter_type, separator, meter_id = Path(path).stem.partition(_FILE_NAME_SEPARATOR)
    if not separator or not meter_type or not meter_id:
        raise ValueError(f"{Path(path).name}: expected a name like <meter_type>__<meter_id>.csv")
    return meter_id, meter_type


def read_meter_csv(
    path: Path,
    *,
    timestamp_column: str = "timestamp",
    local_timezone: str | None = None,
    hour_ending: bool = False,
) -> pd.DataFrame:
    """Readings indexed by UTC ``timestamp`` with float ``value`` (and ``temperature`` if present).

    Timezone-naive stamps are UTC unless ``local_timezone`` names the zone they were written in;
    then DST repeats and holes are resolved by :func:`parse_local_timestamps`.
    """
    frame = pd.read_csv(path)
    if timestamp_column not in frame.columns or VALUE_COLUMN not in frame.columns:
        raise ValueError(f"{Path(path).name}: needs the columns '{timestamp_column}' and 'value'")
    stamps = frame.pop(timestamp_column)
    if local_timezone:
        index = parse_local_timestamps(stamps.astype(str), timezone=local_timezone, hour_ending=hour_ending)
    else:
        index = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))
        if hour_ending:
            index = index - pd.Timedelta(hours=1)
    frame.index = pd.DatetimeIndex(index, name="timestamp")
    columns = [VALUE_COLUMN] + ([TEMPERATURE_COLUMN] if TEMPERATURE_COLUMN in frame.columns else [])
    return pd.DataFrame(
        {column: _numbers(frame[column], Path(path).name) for column in columns}, index=frame.index
    )


def _numbers(column: pd.Series, file_name: str) -> pd.Series:
    """The column as floats (empty cells stay NaN), or a ValueError naming the first bad cell.

    Line numbers count the header as line 1, as an editor shows them.
    """
    numbers = pd.to_numeric(column, errors="coerce").astype("float64")
    not_numbers = column.notna() & numbers.isna()
    infinite = np.isinf(numbers.to_numpy())
    for bad, why in ((not_numbers.to_numpy(), "is not a number"), (infinite, "is infinite")):
        if bad.any():
            position = int(np.argmax(bad))
            raise ValueError(
                f"{file_name}, line {position + 2}, column '{column.name}': '{column.iloc[position]}' {why}; "
                "fix the cell or leave it empty"
            )
    return numbers


def history_lines(
    readings: pd.DataFrame, settings: InfluxSettings, *, meter_id: str, meter_type: str
) -> Iterator[str]:
    """One line-protocol line (seconds precision) per reading, in the readers' schema."""
    tags = {settings.meter_id_tag: meter_id, settings.meter_type_tag: meter_type}
    seconds = readings.index.asi8 // 1_000_000_000
    values = readings[VALUE_COLUMN].to_numpy()
    temperatures = readings[TEMPERATURE_COLUMN].to_numpy() if TEMPERATURE_COLUMN in readings.columns else None
    for position, timestamp_s in enumerate(seconds):
        fields = {settings.field: float(values[position])}
        if temperatures is not None and settings.temperature_field:
            fields[settings.temperature_field] = float(temperatures[position])
        yield format_point(settings.measurement, tags, fields, int(timestamp_s))


def write_lines(
    settings: InfluxSettings, lines: Iterable[str], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """Write line-protocol lines in batches; returns how many were written.

    Version 1 creates the database if it is missing, then POSTs to ``/write?precision=s``;
    version 2 uses ``influxdb-client``'s synchronous write API.
    """
    if settings.version == 2:
        return _write_flux(settings, lines, batch_size)
    return _write_influxql(settings, lines, batch_size)


def import_meter_csv(
    path: Path,
    settings: InfluxSettings,
    *,
    meter_id: str | None = None,
    meter_type: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timestamp_column: str = "timestamp",
    local_timezone: str | None = None,
    hour_ending: bool = False,
) -> int:
    """Import one meter file; id and type default to those in the file name. Returns rows written."""
    if meter_id is None or meter_type is None:
        named_id, named_type = meter_key_from_path(path)
        meter_id = meter_id if meter_id is not None else named_id
        meter_type = meter_type if meter_type is not None else named_type
    readings = read_meter_csv(
        path, timestamp_column=timestamp_column, local_timezone=local_timezone, hour_ending=hour_ending
    )
    lines = history_lines(readings, settings, meter_id=meter_id, meter_type=meter_type)
    return write_lines(settings, lines, batch_size=batch_size)


def _batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_influxql(settings: InfluxSettings, lines: Iterable[str], batch_size: int) -> int:
    base_url = settings.url.rstrip("/")
    auth = (
        httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        if settings.username
        else None
    )
    written = 0
    with httpx.Client(auth=auth, timeout=httpx.Timeout(settings.timeout_seconds)) as client:
        create = f"CREATE DATABASE {quote_identifier(settings.database)}"
        with _reachable(base_url):
            reply = client.post(f"{base_url}/query", data={"q": create})
        _raise_for_result(reply, base_url)
        for batch in _batches(lines, batch_size):
            with _reachable(base_url):
                reply = client.post(
                    f"{base_url}/write",
                    params={"db": settings.database, "precision": "s"},
                    content="\n".join(batch).encode("utf-8"),
                )
            _raise_for_result(reply, base_url)
            written += len(batch)
    return written


def _write_flux(settings: InfluxSettings, lines: Iterable[str], batch_size: int) -> int:
    # Imported here so that version-1 users never load influxdb-client's write machinery.
    from influxdb_client import InfluxDBClient, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    from forecasting.influx_flux import translate_client_errors

    written = 0
    with (
        translate_client_errors(settings.url),
        InfluxDBClient(
            url=settings.url,
            token=settings.token.get_secret_value(),
            org=settings.org or None,
            timeout=int(settings.timeout_seconds * 1000),
        ) as client,
    ):
        write_api = client.write_api(write_options=SYNCHRONOUS)
        for batch in _batches(lines, batch_size):
            write_api.write(
                bucket=settings.bucket,
                org=settings.org or None,
                record=batch,
                write_precision=WritePrecision.S,
            )
            written += len(batch)
    return written


@contextmanager
def _reachable(base_url: str) -> Iterator[None]:
    """Turn transport failures into ``SourceUnavailableError`` naming the URL without credentials."""
    try:
        yield
    except httpx.HTTPError as error:
        raise SourceUnavailableError(
            f"InfluxDB at {redact_url(base_url)} is unreachable ({type(error).__name__})."
        ) from error


def _raise_for_result(reply: httpx.Response, base_url: str) -> None:
    """Raise unless the reply is a success without an ``error`` in its JSON."""
    message = None
    try:
        body = reply.json() if reply.content else {}
    except json.JSONDecodeError:
        body = {"error": reply.text[:500]} if reply.is_error else {}
    if isinstance(body, dict):
        message = body.get("error") or next(
            (result["error"] for result in body.get("results", []) if "error" in result), None
        )
    if reply.status_code >= 500:
        raise SourceUnavailableError(
            f"InfluxDB at {redact_url(base_url)} failed with HTTP {reply.status_code}: {message}"
        )
    if reply.is_error or message:
        raise SourceQueryError(
            f"InfluxDB at {redact_url(base_url)} refused the write (HTTP {reply.status_code}): {message}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m forecasting.importer", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("csv", type=Path, help="meter file named <meter_type>__<meter_id>.csv")
    parser.add_argument("--meter-id", help="default: from the file name")
    parser.add_argument("--meter-type", help="default: from the file name")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="points per write request")
    parser.add_argument("--timestamp-column", default="timestamp", help="name of the timestamp column")
    parser.add_argument(
        "--timezone",
        help="zone of timezone-naive local stamps, e.g. America/New_York (default: naive stamps are UTC)",
    )
    parser.add_argument(
        "--hour-ending", action="store_true", help="stamps mark the end of each interval (e.g. PJM 'HE')"
    )
    arguments = parser.parse_args(argv)

    settings = get_settings()
    named_id = named_type = ""
    if arguments.meter_id is None or arguments.meter_type is None:
        try:
            named_id, named_type = meter_key_from_path(arguments.csv)
        except ValueError as error:
            parser.error(f"{error}, or pass --meter-id and --meter-type")
    try:
        # Refuse ids and types the service would refuse, so an import is never unusable.
        meter_id = check_meter_id(arguments.meter_id or named_id)
        meter_type = check_meter_type(arguments.meter_type or named_type, settings.meter_types)
        written = import_meter_csv(
            arguments.csv,
            settings.influxdb,
            meter_id=meter_id,
            meter_type=meter_type,
            batch_size=arguments.batch_size,
            timestamp_column=arguments.timestamp_column,
            local_timezone=arguments.timezone,
            hour_ending=arguments.hour_ending,
        )
    except (ForecastingError, ValueError, OSError) as error:  # bad files and values: one line, no traceback
        print(f"import failed: {error}", file=sys.stderr)
        return 1
    target = settings.influxdb.database if settings.influxdb.version == 1 else settings.influxdb.bucket
    print(
        f"wrote {written} rows for {meter_type} meter {meter_id} to {redact_url(settings.influxdb.url)} ({target})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
