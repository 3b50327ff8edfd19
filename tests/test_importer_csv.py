"""Reading meter CSVs: UTC stamps as they are, local naive stamps through the DST rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from forecasting.importer import main, read_meter_csv

DATA = Path(__file__).parent / "data"
PROJECT = Path(__file__).parents[1]


def test_local_hour_ending_stamps_import_as_the_published_utc_series() -> None:
    readings = read_meter_csv(
        DATA / "pjm_ekpc_local_hour_ending_dst.csv",
        timestamp_column="timestamp_local_naive_hour_ending",
        local_timezone="America/New_York",
        hour_ending=True,
    )
    published = pd.read_csv(
        PROJECT / "data" / "meters" / "electricity__pjm_ekpc.csv", parse_dates=["timestamp"]
    )
    published = published.set_index("timestamp")["value"]

    assert readings.index.is_unique
    assert (readings["value"] == published.loc[readings.index]).all()
    # Fall-back night: HE02 appears twice locally and becomes two distinct UTC hours.
    assert readings.loc["2015-11-01T05:00:00Z", "value"] == 978
    assert readings.loc["2015-11-01T06:00:00Z", "value"] == 944


def test_naive_stamps_are_read_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "gas__m1.csv"
    path.write_text("timestamp,value\n2024-03-31T01:00:00,1.5\n2024-03-31T02:00:00,2.5\n")

    readings = read_meter_csv(path)

    assert list(readings.index) == [pd.Timestamp("2024-03-31T01:00Z"), pd.Timestamp("2024-03-31T02:00Z")]
    assert readings["value"].tolist() == [1.5, 2.5]


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        (
            "2020-01-01T00:00:00Z,1,5\n2020-01-01T01:00:00Z,2,warm\n",
            "line 3, column 'temperature': 'warm' is not a number",
        ),
        (
            "2020-01-01T00:00:00Z,1,5\n2020-01-01T01:00:00Z,inf,6\n",
            "line 3, column 'value': 'inf' is infinite",
        ),
    ],
)
def test_bad_cells_fail_the_import_in_one_line_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str, says: str
) -> None:
    path = tmp_path / "electricity__bad_cells.csv"
    path.write_text("timestamp,value,temperature\n" + rows, encoding="utf-8")

    code = main([str(path)])

    error = capsys.readouterr().err
    assert code == 1 and says in error and "Traceback" not in error and len(error.splitlines()) == 1


def test_empty_cells_stay_missing(tmp_path: Path) -> None:
    path = tmp_path / "electricity__gappy.csv"
    path.write_text("timestamp,value,temperature\n2020-01-01T00:00:00Z,1,\n2020-01-01T01:00:00Z,,4\n")

    frame = read_meter_csv(path)

    assert frame["value"].isna().tolist() == [False, True]
    assert frame["temperature"].isna().tolist() == [True, False]
