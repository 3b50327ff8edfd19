"""Features: the right lags, calendar in local time, and no window that touches a gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.features import (
    FeatureLayout,
    Scaling,
    build_inputs,
    build_targets,
    calendar_features,
    complete_origins,
    extend_index,
)

HOURLY = FeatureLayout(steps_per_day=24, horizon=24, timezone="UTC", holiday_country="US")


def _index(days: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=days * 24, freq="h", tz="UTC")


def test_inputs_hold_last_day_and_weekly_naive_and_targets_the_next_horizon() -> None:
    values = np.arange(21 * 24, dtype=float)
    calendar = calendar_features(extend_index(_index(21), 24), timezone="UTC", holiday_country=None)
    origins = np.array([14 * 24, 14 * 24 + 5])

    inputs, naive = build_inputs(values, calendar, origins, HOURLY)
    targets = build_targets(values, origins, HOURLY)

    assert inputs.shape == (2, HOURLY.input_width)
    assert inputs[0, :24].tolist() == values[14 * 24 - 24 : 14 * 24].tolist()
    assert naive[1].tolist() == values[14 * 24 + 5 - 168 : 14 * 24 + 5 - 168 + 24].tolist()
    assert targets[1].tolist() == values[14 * 24 + 5 : 14 * 24 + 29].tolist()


def test_windows_touching_a_gap_are_dropped() -> None:
    values = np.ones(30 * 24)
    values[20 * 24] = np.nan

    origins = complete_origins(values, HOURLY, first=0, last=len(values))

    assert len(origins) > 0
    gap = 20 * 24
    for origin in origins:
        assert not (origin - HOURLY.lookback <= gap < origin + HOURLY.horizon)
    assert 20 * 24 - HOURLY.horizon in origins  # last window that ends right before the gap
    assert 20 * 24 - HOURLY.horizon + 1 not in origins


def test_calendar_follows_local_time_through_dst() -> None:
    # 2024-11-03 is a 25-hour day in New York: local hour 1 occurs twice, nothing is skipped.
    index = pd.date_range("2024-11-03T04:00Z", periods=25, freq="h")
    calendar = calendar_features(index, timezone="America/New_York", holiday_country=None)

    local_hours = np.round(np.degrees(np.arctan2(calendar[:, 0], calendar[:, 1])) / 15) % 24
    assert local_hours.tolist() == [0, 1, 1, *range(2, 24)]
    assert (calendar[:, 2 + 6] == 1).all()  # Sunday, every hour of the local day


def test_us_holidays_are_flagged_on_the_local_day() -> None:
    index = pd.date_range("2024-07-04T00:00Z", periods=48, freq="h")
    calendar = calendar_features(index, timezone="America/New_York", holiday_country="US")

    # Local 4 July runs 04:00Z on the 4th to 04:00Z on the 5th.
    assert calendar[4:28, 9].tolist() == [1.0] * 24
    assert calendar[:4, 9].sum() == 0 and calendar[28:, 9].sum() == 0


def test_scaling_round_trips_and_survives_constant_series() -> None:
    values = np.array([10.0, 12.0, 14.0, np.nan])
    scaling = Scaling.fit(values)
    assert np.allclose(scaling.invert(scaling.apply(values[:3])), values[:3])
    assert Scaling.fit(np.full(5, 3.0)).scale == 1.0


def test_temperature_adds_the_last_day_before_the_profile_inputs() -> None:
    layout = FeatureLayout(steps_per_day=24, horizon=24, use_temperature=True)
    values = np.arange(21 * 24, dtype=float)
    temperature = -np.arange(21 * 24, dtype=float) / 10
    calendar = calendar_features(extend_index(_index(21), 24), timezone="UTC", holiday_country=None)
    origin = 14 * 24 + 3

    inputs, _ = build_inputs(values, calendar, np.array([origin]), layout, temperature)
    without, _ = build_inputs(values, calendar, np.array([origin]), HOURLY)

    assert inputs.shape == (1, layout.input_width) and layout.input_width == HOURLY.input_width + 24
    start = HOURLY.input_width - 2 * 24  # after lags, naive, calendar and holidays
    assert inputs[0, start : start + 24] == pytest.approx(temperature[origin - 24 : origin])
    assert inputs[0, start + 24 :].tolist() == without[0, start:].tolist(), "profile inputs follow"


def test_windows_with_a_missing_temperature_are_dropped_only_when_it_is_used() -> None:
    values = np.ones(30 * 24)
    temperature = np.ones(30 * 24)
    temperature[20 * 24] = np.nan
    with_temperature = FeatureLayout(steps_per_day=24, horizon=24, use_temperature=True)

    used = complete_origins(values, with_temperature, first=0, last=len(values), temperature=temperature)
    ignored = complete_origins(values, HOURLY, first=0, last=len(values), temperature=temperature)

    # Temperature enters as the day before the origin: origins 20*24+1 .. 21*24 would see the gap.
    dropped = set(range(20 * 24 + 1, 21 * 24 + 1))
    assert dropped.isdisjoint(used.tolist()) and {20 * 24, 21 * 24 + 1} <= set(used.tolist())
    assert dropped <= set(ignored.tolist())
