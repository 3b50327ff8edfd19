"""Local-time parsing around DST changes, resolution inference and grid snapping.

``tests/data/pjm_ekpc_local_hour_ending_dst.csv`` holds 60 rows of PJM EKPC hourly load (CC0, via
Kaggle ``robikscube/hourly-energy-consumption``) around the 2015 fall-back and 2016 spring-forward
nights, with the source's naive, hour-ending Eastern stamps.
"""

from __future__ import annotations

import pandas as pd
import pytest

from config.settings import PROJECT_ROOT
from forecasting.timestamps import (
    InvalidTimestampError,
    infer_grid_phase,
    infer_resolution,
    parse_local_timestamps,
    snap_to_grid,
)

EXCERPT = PROJECT_ROOT / "tests" / "data" / "pjm_ekpc_local_hour_ending_dst.csv"
CONVERTED = PROJECT_ROOT / "data" / "meters" / "electricity__pjm_ekpc.csv"
EASTERN = "America/New_York"
HOUR = pd.Timedelta(hours=1)


def _utc(*stamps: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(list(stamps)).tz_localize("UTC")


def _parse_excerpt() -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    excerpt = pd.read_csv(EXCERPT)
    utc = parse_local_timestamps(excerpt.iloc[:, 0], timezone=EASTERN, hour_ending=True)
    return excerpt, utc


def test_parse_local_timestamps__matches_the_converted_pjm_file():
    excerpt, utc = _parse_excerpt()
    converted = pd.read_csv(CONVERTED, index_col="timestamp", parse_dates=True)["value"]

    assert utc.is_unique
    assert converted.reindex(utc).tolist() == excerpt["value"].tolist()


def test_parse_local_timestamps__fall_back_repeated_hour_is_dst_then_standard():
    excerpt, utc = _parse_excerpt()
    repeated = (excerpt.iloc[:, 0] == "2015-11-01T02:00:00").to_numpy()

    # HE 02:00 twice: starts 01:00 EDT (05:00Z, 978 MW) then 01:00 EST (06:00Z, 944 MW).
    assert list(utc[repeated]) == list(_utc("2015-11-01 05:00", "2015-11-01 06:00"))
    assert excerpt["value"][repeated].tolist() == [978.0, 944.0]


def test_parse_local_timestamps__spring_forward_missing_hour_stays_absent():
    excerpt, utc = _parse_excerpt()
    spring = utc[utc > pd.Timestamp("2016-03-01", tz="UTC")]

    assert len(utc) == len(excerpt)  # no fabricated row
    assert spring.to_series().diff().dropna().eq(HOUR).all()  # ...and no hole in UTC
    assert _utc("2016-03-13 06:00", "2016-03-13 07:00").isin(spring).all()  # HE02 and HE04


@pytest.mark.parametrize(
    ("day", "hours"),
    [("2016-03-13", 23), ("2015-11-01", 25)],
)
@pytest.mark.parametrize("hour_ending", [False, True])
def test_parse_local_timestamps__short_and_long_local_days_give_a_seamless_utc_grid(day, hours, hour_ending):
    # The wall-clock labels a logger writes on that day, in order (01:00 twice in autumn, no 02:00 in spring).
    local = pd.date_range(pd.Timestamp(day, tz=EASTERN), periods=hours, freq="h").tz_localize(None)
    stamps = pd.Series((local + (HOUR if hour_ending else pd.Timedelta(0))).strftime("%Y-%m-%dT%H:%M:%S"))

    utc = parse_local_timestamps(stamps, timezone=EASTERN, hour_ending=hour_ending)

    assert len(utc) == hours
    assert utc.is_unique
    assert utc.to_series().diff().dropna().eq(HOUR).all()


def test_parse_local_timestamps__stamp_inside_the_spring_gap_is_an_error():
    with pytest.raises(InvalidTimestampError, match="not a valid time"):
        parse_local_timestamps(pd.Series(["2016-03-13T02:30:00"]), timezone=EASTERN, hour_ending=False)


def test_parse_local_timestamps__unreadable_stamp_is_an_error():
    with pytest.raises(InvalidTimestampError, match="cannot parse"):
        parse_local_timestamps(pd.Series(["yesterday"]), timezone=EASTERN, hour_ending=False)


def test_parse_local_timestamps__stamps_with_offsets_are_converted_not_relocalised():
    stamps = pd.Series(["2016-01-01T10:00:00+01:00", "2016-01-01T11:00:00+01:00"])

    utc = parse_local_timestamps(stamps, timezone=EASTERN, hour_ending=False)

    assert list(utc) == list(_utc("2016-01-01 09:00", "2016-01-01 10:00"))


@pytest.mark.parametrize("minutes", [15, 30, 60])
def test_infer_resolution__median_spacing_with_jitter_and_gaps(minutes):
    stamps = pd.date_range("2024-01-01", periods=200, freq=f"{minutes}min", tz="UTC")
    jittered = stamps.delete(range(50, 60)) + pd.to_timedelta([3, -2, 0, 1] * 47 + [0, 0], unit="s")

    assert infer_resolution(jittered) == pd.Timedelta(minutes=minutes)


def test_infer_resolution__ignores_duplicate_writes_seconds_apart():
    hourly = pd.date_range("2024-01-01", periods=48, freq="h", tz="UTC")

    assert infer_resolution(hourly.append(hourly + pd.Timedelta(seconds=1))) == HOUR


def test_snap_to_grid__moves_jittered_stamps_to_the_nearest_point():
    stamps = _utc("2024-01-01 10:00:03", "2024-01-01 10:59:58", "2024-01-01 12:29:59", "2024-01-01 12:30:00")

    snapped = snap_to_grid(stamps, HOUR, pd.Timedelta(0))

    assert list(snapped) == list(
        _utc("2024-01-01 10:00", "2024-01-01 11:00", "2024-01-01 12:00", "2024-01-01 13:00")
    )


def test_infer_grid_phase__hourly_readings_at_half_past():
    stamps = pd.date_range("2024-01-01 00:30", periods=24, freq="h", tz="UTC")

    phase = infer_grid_phase(stamps, HOUR)

    assert phase == pd.Timedelta(minutes=30)
    assert snap_to_grid(stamps, HOUR, phase).equals(stamps)
