"""Metrics and the day-ahead backtest, checked against answers worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from forecasting.evaluation import (
    BacktestReport,
    ForecastMetrics,
    backtest,
    day_ahead_origins,
    mae,
    naive_in_sample_mae,
    rmse,
    score,
    seasonal_naive,
    skill,
    wape,
)

NAN = np.nan


def test_mae_rmse_wape__hand_computed():
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    forecast = np.array([2.0, 2.0, 1.0, 4.0])  # errors 1, 0, 2, 0
    assert mae(actual, forecast) == pytest.approx(0.75)
    assert rmse(actual, forecast) == pytest.approx(math.sqrt(5 / 4))
    assert wape(actual, forecast) == pytest.approx(3 / 10 * 100)


def test_metrics__skip_nan_actuals_and_forecasts():
    actual = np.array([1.0, NAN, 3.0, 10.0])
    forecast = np.array([2.0, 100.0, 1.0, NAN])  # only pairs 0 and 2 count: errors 1, 2
    assert mae(actual, forecast) == pytest.approx(1.5)
    assert rmse(actual, forecast) == pytest.approx(math.sqrt(5 / 2))
    assert wape(actual, forecast) == pytest.approx(3 / 4 * 100)


def test_metrics__without_known_pairs_are_undefined():
    actual = np.array([NAN, NAN])
    assert math.isnan(mae(actual, np.array([1.0, 2.0])))
    assert math.isnan(rmse(actual, np.array([1.0, 2.0])))
    assert wape(actual, np.array([1.0, 2.0])) is None


def test_wape__all_zero_actuals_is_none_not_inf():
    assert wape(np.zeros(3), np.array([1.0, 0.0, 2.0])) is None


def test_metrics__shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        mae(np.zeros(3), np.zeros(4))


def test_seasonal_naive__repeats_the_previous_season():
    values = np.array([10.0, 11.0, 12.0, 13.0, 14.0, 15.0])
    # season 2, origin 4: h=0 -> values[2], h=1 -> values[3]
    np.testing.assert_array_equal(seasonal_naive(values, season=2, horizon=2, origin=4), [12.0, 13.0])


def test_seasonal_naive__longer_horizon_never_peeks_past_origin():
    values = np.array([10.0, 11.0, 12.0, 13.0, 99.0, 99.0, 99.0])
    forecast = seasonal_naive(values, season=2, horizon=5, origin=4)
    np.testing.assert_array_equal(forecast, [12.0, 13.0, 12.0, 13.0, 12.0])


def test_seasonal_naive__origin_without_a_full_season_raises():
    with pytest.raises(ValueError, match="needs 3 earlier values"):
        seasonal_naive(np.arange(5.0), season=3, horizon=1, origin=2)


def test_naive_in_sample_mae__hand_computed_and_nan_safe():
    # season 2 pairs: |3-1|, |NaN-2| skipped, |7-3| -> mean(2, 4) = 3
    assert naive_in_sample_mae(np.array([1.0, 2.0, 3.0, NAN, 7.0]), season=2) == pytest.approx(3.0)
    assert math.isnan(naive_in_sample_mae(np.array([1.0, 2.0]), season=2))


def test_skill__relative_improvement_and_undefined_cases():
    assert skill(1.0, 4.0) == pytest.approx(0.75)
    assert skill(6.0, 4.0) == pytest.approx(-0.5)
    assert skill(1.0, 0.0) is None
    assert skill(NAN, 4.0) is None
    assert skill(None, 4.0) is None


def test_score__two_origins_with_a_missing_actual():
    actual = np.array([[1.0, 2.0], [NAN, NAN]])
    forecast = np.array([[2.0, 4.0], [5.0, 5.0]])  # row 2 has no actuals: not a scored forecast
    metrics = score(actual, forecast, mase_scale=2.0)
    assert metrics == ForecastMetrics(
        mae=1.5, rmse=math.sqrt(5 / 2), wape=100.0, mase=0.75, forecasts=1, points=2
    )


def test_score__unusable_mase_scale_gives_none():
    actual, forecast = np.array([[1.0]]), np.array([[2.0]])
    assert score(actual, forecast, mase_scale=0.0).mase is None
    assert score(actual, forecast, mase_scale=NAN).mase is None
    assert score(actual, forecast, mase_scale=None).mase is None


def test_score__no_points_is_json_safe():
    metrics = score(np.full((2, 2), NAN), np.ones((2, 2)), mase_scale=1.0)
    assert (metrics.mae, metrics.rmse, metrics.wape, metrics.mase, metrics.points) == (
        None,
        None,
        None,
        None,
        0,
    )
    assert json.loads(metrics.model_dump_json())["mae"] is None


def test_forecast_metrics__rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        ForecastMetrics(mae=NAN, rmse=1.0, wape=None, mase=None, forecasts=1, points=1)


def _hourly(days: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=24 * days, freq="h", tz="UTC")


def test_day_ahead_origins__local_midnights_in_the_last_weeks():
    index = _hourly(21)
    origins = day_ahead_origins(index, weeks=1, horizon_steps=24, steps_per_day=24, timezone="UTC")
    # last 7 days start at position 14*24; the last origin leaves a full day: position 20*24
    assert origins == [day * 24 for day in range(14, 21)]
    assert all(index[position].hour == 0 for position in origins)


def test_day_ahead_origins__follow_the_meter_timezone():
    index = _hourly(14)
    origins = day_ahead_origins(
        index, weeks=1, horizon_steps=24, steps_per_day=24, timezone="Europe/Berlin"
    )  # UTC+1 in January: local midnight is 23:00 UTC
    assert origins
    assert all(index[position].tz_convert("Europe/Berlin").hour == 0 for position in origins)
    assert all(index[position].hour == 23 for position in origins)
    assert origins[-1] + 24 <= len(index)


def test_day_ahead_origins__half_hour_zone_uses_first_step_of_the_day():
    index = _hourly(10)
    origins = day_ahead_origins(index, weeks=1, horizon_steps=24, steps_per_day=24, timezone="Asia/Kolkata")
    local = [index[position].tz_convert("Asia/Kolkata") for position in origins]
    # 00:30 IST is 19:00 UTC; window starts at 240-168=72, last full horizon starts by 216
    assert origins == [19 + 24 * day for day in range(3, 9)]
    assert all((stamp.hour, stamp.minute) == (0, 30) for stamp in local)


def test_day_ahead_origins__min_origin_and_short_index():
    index = _hourly(3)
    assert day_ahead_origins(index, weeks=1, horizon_steps=24, steps_per_day=24, timezone="UTC") == [24, 48]
    assert day_ahead_origins(
        index, weeks=1, horizon_steps=24, steps_per_day=24, timezone="UTC", min_origin=25
    ) == [48]
    assert day_ahead_origins(index[:1], weeks=1, horizon_steps=1, steps_per_day=24, timezone="UTC") == []


def test_backtest__model_and_naive_scored_on_the_same_points():
    # season 2; origins 4 and 6 with horizon 2
    values = np.array([1.0, 2.0, 1.0, 2.0, 3.0, 4.0, NAN, 6.0])
    index = pd.date_range("2024-01-01", periods=len(values), freq="h", tz="UTC")
    forecasts = {4: np.array([3.0, 3.0]), 6: np.array([7.0, 7.0])}
    calls: list[int] = []

    def forecast_fn(origin: int) -> np.ndarray:
        calls.append(origin)
        return forecasts[origin]

    report = backtest(
        values, [4, 6], forecast_fn, horizon=2, season=2, mase_scale=0.5, model_kind="dense", index=index
    )
    # origin 4: actual [3, 4], naive [1, 2], model [3, 3]
    # origin 6: actual [NaN, 6], naive [3, 4], model [7, 7]
    # model errors 0, 1, 1 -> MAE 2/3; naive errors 2, 2, 2 -> MAE 2
    assert calls == [4, 6]
    assert report.model.mae == pytest.approx(2 / 3)
    assert report.model.mase == pytest.approx(4 / 3)
    assert report.seasonal_naive.mae == pytest.approx(2.0)
    assert report.skill == pytest.approx(1 - (2 / 3) / 2)
    assert (report.model.points, report.seasonal_naive.points, report.origins, report.horizon) == (3, 3, 2, 2)
    assert report.window_start == index[4].to_pydatetime()
    assert report.window_end == index[7].to_pydatetime()
    assert BacktestReport.model_validate_json(report.model_dump_json()) == report


def test_backtest__naive_gap_removes_the_point_from_both():
    values = np.array([1.0, NAN, 5.0, 6.0])
    index = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC")
    report = backtest(
        values,
        [2],
        lambda origin: np.array([5.0, 0.0]),
        horizon=2,
        season=2,
        mase_scale=None,
        model_kind="dense",
        index=index,
    )  # naive [1, NaN]: only position 2 is comparable; model error 0, naive error 4
    assert (report.model.points, report.model.mae, report.seasonal_naive.mae) == (1, 0.0, 4.0)
    assert report.skill == pytest.approx(1.0)


def test_backtest__rejects_bad_origins_and_forecasts():
    values, index = np.arange(6.0), pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")

    def run(origins: list[int], forecast: np.ndarray) -> BacktestReport:
        return backtest(
            values,
            origins,
            lambda _: forecast,
            horizon=2,
            season=2,
            mase_scale=1.0,
            model_kind="x",
            index=index,
        )

    with pytest.raises(ValueError, match="at least one origin"):
        run([], np.zeros(2))
    with pytest.raises(ValueError, match="past the end"):
        run([5], np.zeros(2))
    with pytest.raises(ValueError, match="earlier values"):
        run([1], np.zeros(2))  # no full season before origin 1
    with pytest.raises(ValueError, match="expected 2"):
        run([2], np.zeros(3))
