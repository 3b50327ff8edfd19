"""Answer forecast requests: measured values for the past, the active model's forecast after them.

Models are loaded once per process and reused until another version becomes active.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from config.settings import Settings
from forecasting.cleaning import clean_history
from forecasting.errors import DataError, ModelError, ModelNotFoundError
from forecasting.features import FeatureLayout
from forecasting.forecast_range import check_forecast_range
from forecasting.forecasters import (
    AnyForecaster,
    SeasonalNaiveForecaster,
    SeriesView,
    load_forecaster,
)
from forecasting.meter_history import MeterHistory
from forecasting.registry import ModelRegistry

Resolution = Literal["daily", "hourly"]


@dataclass
class ForecasterCache:
    """Loaded forecasters by meter, keyed on the active version so a promotion is picked up."""

    _loaded: dict[tuple[str, str], tuple[str, AnyForecaster]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def active(
        self, registry: ModelRegistry, meter_type: str, meter_id: str
    ) -> tuple[str, AnyForecaster] | None:
        version = registry.active_version(meter_type, meter_id)
        if version is None:
            return None
        key = (meter_type, meter_id)
        with self._lock:
            cached = self._loaded.get(key)
            if cached is None or cached[0] != version.version:
                cached = (version.version, load_forecaster(version.path, version.metadata))
                self._loaded[key] = cached
        return cached


@dataclass(frozen=True)
class ForecastTable:
    model_kind: str
    model_version: str | None
    rows: list[dict[str, Any]]


def forecast_table(
    meter_id: str,
    meter_type: str,
    *,
    start_date: date,
    end_date: date,
    resolution: Resolution,
    use_fallback: bool,
    history: MeterHistory,
    registry: ModelRegistry,
    cache: ForecasterCache,
    settings: Settings,
) -> ForecastTable:
    """Rows for ``[start_date, end_date]`` (local dates, inclusive) of measured and forecast values."""
    check_forecast_range(start_date, end_date)
    active = cache.active(registry, meter_type, meter_id)
    if active is None and not use_fallback:
        trained = len(registry.list_versions(meter_type, meter_id))
        raise ModelNotFoundError(meter_type, meter_id, inactive_versions=trained)

    zone = ZoneInfo(settings.cleaning.timezone)
    start = datetime.combine(start_date, time(), zone)
    end = datetime.combine(end_date + timedelta(days=1), time(), zone)
    # Eight days feed the network and the naive; MSTL refits on its own, longer window.
    lookback_days = max(8, getattr(active[1], "lookback_days", 0) + 1) if active else 8
    raw = history.fetch(meter_id, meter_type, start=start - timedelta(days=lookback_days), end=end)
    if raw.empty:
        raise DataError(
            f"No readings for meter '{meter_id}' from {(start - timedelta(days=lookback_days)).date()} "
            f"to {end_date} ({lookback_days} days before start_date are needed too); forecasts start "
            "from the last reading, so ask for dates near it (GET /models/ shows each version's data window)."
        )
    cleaned = clean_history(raw, meter_type=meter_type, settings=settings.cleaning)
    frame = cleaned.frame
    step = cleaned.resolution

    if active is None:
        version_id, forecaster = None, _naive_forecaster(cleaned.resolution, settings)
    else:
        version_id, forecaster = active
    layout = forecaster.layout
    if layout.steps_per_day != int(pd.Timedelta(days=1) / step):
        raise ModelError("The meter's resolution changed since its model was trained; retrain it.")

    measured = frame["value"].dropna()
    last = measured.index[-1]
    frame = frame.loc[:last]
    series = SeriesView.from_frame(frame, layout)
    origin = np.asarray([len(series.values)])
    point = forecaster.forecast_at(series, origin)[0]
    forecast_index = pd.date_range(last + step, periods=layout.horizon, freq=step)
    if pd.Timestamp(datetime.combine(end_date, time(), zone)) > forecast_index[-1]:
        hours = layout.horizon * step / pd.Timedelta(hours=1)
        raise DataError(
            f"The model forecasts {hours:g} h past the last reading ({last.isoformat()}); "
            f"use an end_date on or before {forecast_index[-1].tz_convert(zone).date()}."
        )
    low, high = _interval(forecaster, point)

    window = (measured.index >= pd.Timestamp(start)) & (measured.index < pd.Timestamp(end))
    rows = pd.DataFrame(
        {
            "value": np.concatenate([measured[window].to_numpy(), point]),
            "p10": np.concatenate([np.full(window.sum(), np.nan), low]),
            "p90": np.concatenate([np.full(window.sum(), np.nan), high]),
            "forecast": np.concatenate([np.zeros(window.sum(), bool), np.ones(len(point), bool)]),
        },
        index=measured.index[window].append(forecast_index),
    )
    rows = rows[(rows.index >= pd.Timestamp(start)) & (rows.index < pd.Timestamp(end))]
    if resolution == "daily":
        rows = _daily(rows, zone)
    return ForecastTable(forecaster.kind, version_id, _as_records(rows, zone))


def _naive_forecaster(resolution: pd.Timedelta, settings: Settings) -> SeasonalNaiveForecaster:
    layout = FeatureLayout(
        steps_per_day=int(pd.Timedelta(days=1) / resolution),
        horizon=int(pd.Timedelta(hours=settings.training.horizon_hours) / resolution),
        timezone=settings.cleaning.timezone,
    )
    return SeasonalNaiveForecaster(layout)


def _interval(forecaster: Any, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low = getattr(forecaster, "interval_low", None)
    high = getattr(forecaster, "interval_high", None)
    if low is None or high is None:
        return np.full(len(point), np.nan), np.full(len(point), np.nan)
    return point + low, point + high


def _daily(rows: pd.DataFrame, zone: ZoneInfo) -> pd.DataFrame:
    """Sum per local day; a day with any forecast interval is a forecast day.

    Interval bounds of a day add the per-step bounds, a deliberately wide (conservative) band.
    ``hours`` is how much of the day the summed rows cover (measured and forecast), ``forecast_hours``
    the forecast part, and ``complete`` says whether they cover the whole local day (23 or 25 hours
    across a DST change). A day cut short by the start of the data, a gap or the end of the forecast
    horizon is summed over fewer hours, and says so.
    """
    local_day = rows.index.tz_convert(zone).normalize()
    steps = rows.index.to_series().diff()
    step = steps[steps > pd.Timedelta(0)].min()
    step_hours = 1.0 if pd.isna(step) else step / pd.Timedelta(hours=1)  # a lone row: say one hour
    grouped = rows.groupby(local_day)
    hours = grouped.size() * step_hours
    next_midnights = [
        (day.tz_localize(None) + pd.Timedelta(days=1)).tz_localize(zone, nonexistent="shift_forward")
        for day in hours.index
    ]
    day_hours = (pd.DatetimeIndex(next_midnights) - hours.index) / pd.Timedelta(hours=1)
    daily = pd.DataFrame(
        {
            "value": grouped["value"].sum(),
            "forecast": grouped["forecast"].any(),
            "p10": grouped.apply(lambda day: _bound(day, "p10")),
            "p90": grouped.apply(lambda day: _bound(day, "p90")),
            "hours": hours.round(4),
            "forecast_hours": (grouped["forecast"].sum() * step_hours).round(4),
            "complete": hours.to_numpy() >= day_hours.to_numpy() - 1e-9,
        }
    )
    return daily


def _bound(day: pd.DataFrame, column: str) -> float:
    if not day["forecast"].any() or day[column].isna().all():
        return float("nan")
    measured = day.loc[~day["forecast"], "value"].sum()
    return float(measured + day.loc[day["forecast"], column].sum())


def _as_records(rows: pd.DataFrame, zone: ZoneInfo) -> list[dict[str, Any]]:
    records = []
    for timestamp, row in rows.iterrows():
        records.append(
            {
                "datetime": pd.Timestamp(timestamp).tz_convert(zone).isoformat(),
                "value": round(float(row["value"]), 6),
                "type": "forecast" if row["forecast"] else "historical",
                "p10": None if np.isnan(row["p10"]) else round(float(row["p10"]), 6),
                "p90": None if np.isnan(row["p90"]) else round(float(row["p90"]), 6),
            }
        )
        if "complete" in rows.columns:  # daily rows: how much of the day the value covers
            records[-1] |= {
                "complete": bool(row["complete"]),
                "hours": float(row["hours"]),
                "forecast_hours": float(row["forecast_hours"]),
            }
    return records
