"""How good is a forecast, and is it better than repeating last week?

A loss value from training says little to an operator; a rolling-origin day-ahead backtest against a
seasonal-naive baseline does. Every number here is JSON-safe: undefined metrics (no points, zero
denominators) are ``None`` rather than NaN or infinity, so reports can go straight into
``metadata.json`` and API responses. Missing actuals (NaN) are skipped everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

ForecastFn = Callable[[int], np.ndarray]


class ForecastMetrics(BaseModel):
    """Errors of one set of forecasts, over the points where actual and forecast are both known.

    ``mae`` and ``rmse`` are ``None`` only when no point could be scored.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    mae: float | None = Field(description="Mean absolute error, in the meter's unit")
    rmse: float | None = Field(description="Root mean squared error, in the meter's unit")
    wape: float | None = Field(description="sum|error| / sum|actual| * 100; None when sum|actual| is 0")
    mase: float | None = Field(description="MAE / in-sample seasonal-naive MAE; None without a usable scale")
    forecasts: int = Field(ge=0, description="Forecasts (origins) with at least one scored point")
    points: int = Field(ge=0, description="Scored (actual, forecast) pairs")


class BacktestReport(BaseModel):
    """A model's rolling-origin backtest next to the seasonal-naive baseline on the same points."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, protected_namespaces=())

    model_kind: str
    window_start: datetime = Field(description="Time of the first forecast origin")
    window_end: datetime = Field(description="Time of the last forecast point (inclusive)")
    origins: int = Field(ge=0)
    horizon: int = Field(ge=1, description="Steps forecast from each origin")
    model: ForecastMetrics
    seasonal_naive: ForecastMetrics
    skill: float | None = Field(description="1 - MAE(model) / MAE(naive); > 0 beats the baseline")


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _known_pairs(actual: np.ndarray, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flattened pairs where both actual and forecast are finite."""
    actual = np.asarray(actual, dtype=float)
    forecast = np.asarray(forecast, dtype=float)
    if actual.shape != forecast.shape:
        raise ValueError(f"actual shape {actual.shape} != forecast shape {forecast.shape}")
    known = np.isfinite(actual) & np.isfinite(forecast)
    return actual[known], forecast[known]


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error over known pairs; NaN when there are none."""
    known_actual, known_forecast = _known_pairs(actual, forecast)
    if known_actual.size == 0:
        return math.nan
    return float(np.mean(np.abs(known_actual - known_forecast)))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Root mean squared error over known pairs; NaN when there are none."""
    known_actual, known_forecast = _known_pairs(actual, forecast)
    if known_actual.size == 0:
        return math.nan
    return float(np.sqrt(np.mean((known_actual - known_forecast) ** 2)))


def wape(actual: np.ndarray, forecast: np.ndarray) -> float | None:
    """Weighted absolute percentage error, ``sum|e| / sum|actual| * 100``.

    Unlike MAPE it survives zero readings (common for gas and water at night). Returns ``None`` when
    no pair is known or ``sum|actual|`` is 0, where a percentage means nothing.
    """
    known_actual, known_forecast = _known_pairs(actual, forecast)
    scale = float(np.sum(np.abs(known_actual)))
    if known_actual.size == 0 or scale == 0.0:
        return None
    return _finite_or_none(float(np.sum(np.abs(known_actual - known_forecast))) / scale * 100.0)


def seasonal_naive(values: np.ndarray, *, season: int, horizon: int, origin: int) -> np.ndarray:
    """Forecast positions ``origin .. origin+horizon-1`` by repeating the last season before ``origin``.

    For ``h < season`` this is ``values[origin + h - season]``; longer horizons repeat the same
    season again, so the baseline never looks at data at or after ``origin``.
    """
    if season < 1 or horizon < 1:
        raise ValueError("season and horizon must be >= 1")
    if origin < season or origin > len(values):
        raise ValueError(f"origin {origin} needs {season} earlier values and at most {len(values)}")
    steps = np.arange(horizon)
    return np.asarray(values, dtype=float)[origin - season + steps % season]


def naive_in_sample_mae(values: np.ndarray, *, season: int) -> float:
    """MASE scale: mean ``|y_t - y_{t-season}|`` over the (training) series, skipping unknown pairs.

    NaN when no pair is known; :func:`score` then reports ``mase`` as ``None``.
    """
    if season < 1:
        raise ValueError("season must be >= 1")
    series = np.asarray(values, dtype=float)
    if series.size <= season:
        return math.nan
    return mae(series[season:], series[:-season])


def skill(model_mae: float | None, naive_mae: float | None) -> float | None:
    """``1 - model_mae / naive_mae``: 0.2 means 20 % less error than the baseline.

    ``None`` when either MAE is unknown or the baseline is perfect (naive MAE 0).
    """
    model_mae, naive_mae = _finite_or_none(model_mae), _finite_or_none(naive_mae)
    if model_mae is None or naive_mae is None or naive_mae == 0.0:
        return None
    return _finite_or_none(1.0 - model_mae / naive_mae)


def score(actual: np.ndarray, forecast: np.ndarray, *, mase_scale: float | None) -> ForecastMetrics:
    """Metrics of forecasts shaped ``(origins, horizon)``; pairs with a NaN on either side are skipped."""
    actual = np.atleast_2d(np.asarray(actual, dtype=float))
    forecast = np.atleast_2d(np.asarray(forecast, dtype=float))
    if actual.shape != forecast.shape:
        raise ValueError(f"actual shape {actual.shape} != forecast shape {forecast.shape}")
    known = np.isfinite(actual) & np.isfinite(forecast)
    model_mae = _finite_or_none(mae(actual, forecast))
    scale = _finite_or_none(mase_scale)
    mase = None if model_mae is None or scale is None or scale == 0.0 else _finite_or_none(model_mae / scale)
    return ForecastMetrics(
        mae=model_mae,
        rmse=_finite_or_none(rmse(actual, forecast)),
        wape=wape(actual, forecast),
        mase=mase,
        forecasts=int(np.count_nonzero(known.any(axis=1))),
        points=int(np.count_nonzero(known)),
    )


def day_ahead_origins(
    index: pd.DatetimeIndex,
    *,
    weeks: int,
    horizon_steps: int,
    steps_per_day: int,
    timezone: str,
    min_origin: int = 0,
) -> list[int]:
    """Positions where a day-ahead forecast is made: the first step of each local day.

    Only origins in the last ``weeks`` weeks (``weeks * 7 * steps_per_day`` steps) whose whole
    horizon lies inside ``index`` are returned, and none before ``min_origin`` (use it to leave room
    for a model's lookback or the naive season). "First step of the day" rather than "exactly
    00:00" keeps half-hour-offset zones working with hourly data. A naive index is taken as UTC.
    """
    if weeks < 1 or horizon_steps < 1 or steps_per_day < 1:
        raise ValueError("weeks, horizon_steps and steps_per_day must be >= 1")
    if len(index) < 2:
        return []
    utc_index = index if index.tz is not None else index.tz_localize("UTC")
    local_days = utc_index.tz_convert(timezone).normalize()
    day_starts = np.flatnonzero(local_days[1:] != local_days[:-1]) + 1
    first = max(len(index) - weeks * 7 * steps_per_day, min_origin, 1)
    last = len(index) - horizon_steps
    return [int(position) for position in day_starts if first <= position <= last]


def backtest(
    values: np.ndarray,
    origins: list[int],
    forecast_fn: ForecastFn,
    *,
    horizon: int,
    season: int,
    mase_scale: float | None,
    model_kind: str,
    index: pd.DatetimeIndex,
) -> BacktestReport:
    """Score ``forecast_fn`` against seasonal-naive from each origin.

    ``forecast_fn(origin)`` returns ``horizon`` values for positions ``origin .. origin+horizon-1``
    using only data before ``origin``. Both forecasts are scored on the same points (actual, model
    and naive all known), so ``skill`` compares like with like.

    Raises:
        ValueError: no origins, an origin without ``season`` earlier values or a full horizon after
            it, or a forecast of the wrong length.
    """
    series = np.asarray(values, dtype=float)
    if not origins:
        raise ValueError("backtest needs at least one origin")
    if len(index) != len(series):
        raise ValueError(f"index has {len(index)} entries, values {len(series)}")
    actual = np.empty((len(origins), horizon))
    model_forecast = np.empty_like(actual)
    naive_forecast = np.empty_like(actual)
    for row, origin in enumerate(origins):
        if origin + horizon > len(series):
            raise ValueError(f"origin {origin}: horizon runs past the end of the series")
        naive_forecast[row] = seasonal_naive(series, season=season, horizon=horizon, origin=origin)
        forecast = np.asarray(forecast_fn(origin), dtype=float).reshape(-1)
        if forecast.shape != (horizon,):
            raise ValueError(f"origin {origin}: forecast has {forecast.size} values, expected {horizon}")
        model_forecast[row] = forecast
        actual[row] = series[origin : origin + horizon]
    comparable = np.isfinite(model_forecast) & np.isfinite(naive_forecast)
    actual[~comparable] = np.nan
    model_metrics = score(actual, model_forecast, mase_scale=mase_scale)
    naive_metrics = score(actual, naive_forecast, mase_scale=mase_scale)
    return BacktestReport(
        model_kind=model_kind,
        window_start=index[min(origins)].to_pydatetime(),
        window_end=index[max(origins) + horizon - 1].to_pydatetime(),
        origins=len(origins),
        horizon=horizon,
        model=model_metrics,
        seasonal_naive=naive_metrics,
        skill=skill(model_metrics.mae, naive_metrics.mae),
    )
