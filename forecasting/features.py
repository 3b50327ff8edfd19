"""Turn a cleaned, regular meter series into model inputs and targets.

A sample is a forecast origin ``t`` (a grid position): the model sees the last day of readings, the
weekly seasonal-naive forecast for the horizon (last week's same steps), the calendar at the origin
and holiday flags for the target and source days, and learns the *residual* over that naive
forecast. Starting from the baseline a utility analyst would use means a small network is never
worse than it on short histories, and only has to learn the corrections.

Two more naive forecasts ride along as differences from the weekly one (``profile_inputs``): the
mean of the last seven days at the same time of day, and the day before. The network blends them
in through a linear path (:mod:`forecasting.keras_model`) that starts halfway between last week and
the 7-day profile. On noisy or weather-driven meters
(net load with solar, district heat) the 7-day mean beats last week by itself, and a short
history gives too few training steps to learn that blend through the hidden layers
(``benchmarks/RESULTS.md``, Accuracy).

Everything here is numpy over whole arrays: one fancy-indexing pass builds every sample at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

CALENDAR_COLUMNS = 10  # hour sin/cos, weekday one-hot (7), holiday flag
PROFILE_DAYS = 7  # days averaged into the same-time-of-day profile (fits the one-week lookback)


@dataclass(frozen=True)
class FeatureLayout:
    """Shape of the inputs; saved with a model so inference builds exactly the same features."""

    steps_per_day: int
    horizon: int
    timezone: str = "UTC"
    holiday_country: str | None = None
    use_temperature: bool = False
    #: Append the 7-day profile and day-before forecasts (minus the weekly naive) as the last
    #: ``2 * horizon`` inputs. Layouts saved before this existed load with ``False``.
    profile_inputs: bool = True

    @property
    def week(self) -> int:
        return 7 * self.steps_per_day

    @property
    def lookback(self) -> int:
        """Readings needed before an origin."""
        return self.week

    @property
    def input_width(self) -> int:
        temperature = self.steps_per_day if self.use_temperature else 0
        profile = 2 * self.horizon if self.profile_inputs else 0
        return self.steps_per_day + self.horizon + 9 + 2 * self.horizon + temperature + profile

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, content: dict[str, Any]) -> FeatureLayout:
        return cls(**{"profile_inputs": False, **content})


@dataclass(frozen=True)
class Scaling:
    """Per-meter affine scaling, so one architecture fits kW buildings and GW utility zones."""

    center: float
    scale: float

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaling:
        finite = values[np.isfinite(values)]
        center = float(np.median(finite)) if finite.size else 0.0
        scale = float(np.std(finite)) if finite.size else 1.0
        return cls(center=center, scale=scale if scale > 1e-9 else 1.0)

    def apply(self, values: np.ndarray) -> np.ndarray:
        return (values - self.center) / self.scale

    def invert(self, values: np.ndarray) -> np.ndarray:
        return values * self.scale + self.center


def calendar_features(index: pd.DatetimeIndex, *, timezone: str, holiday_country: str | None) -> np.ndarray:
    """Per grid position: local hour (sin, cos), local weekday one-hot, public-holiday flag.

    Local time comes from the meter's zone, so a 23- or 25-hour DST day shifts the hour features
    correctly instead of showing up as a gap or a duplicate.
    """
    local = index.tz_convert(timezone)
    hour = local.hour.to_numpy() + local.minute.to_numpy() / 60.0
    angle = 2 * np.pi * hour / 24.0
    calendar = np.zeros((len(index), CALENDAR_COLUMNS), dtype=np.float32)
    calendar[:, 0] = np.sin(angle)
    calendar[:, 1] = np.cos(angle)
    calendar[np.arange(len(index)), 2 + local.weekday.to_numpy()] = 1.0
    calendar[:, 9] = holiday_flags(local, holiday_country)
    return calendar


def holiday_flags(local_index: pd.DatetimeIndex, country: str | None) -> np.ndarray:
    if country is None or len(local_index) == 0:
        return np.zeros(len(local_index), dtype=np.float32)
    import holidays

    years = range(local_index.year.min(), local_index.year.max() + 1)
    calendar = holidays.country_holidays(country, years=years)
    days = pd.Index([date(d.year, d.month, d.day) for d in calendar])
    return local_index.normalize().tz_localize(None).isin(pd.to_datetime(days)).astype(np.float32)


def extend_index(index: pd.DatetimeIndex, steps: int) -> pd.DatetimeIndex:
    """The grid continued ``steps`` positions past its end, for calendar features of the future."""
    if steps <= 0:
        return index
    step = index[1] - index[0]
    future = pd.date_range(index[-1] + step, periods=steps, freq=step, tz=index.tz)
    return index.append(future)


def build_inputs(
    scaled: np.ndarray,
    calendar: np.ndarray,
    origins: np.ndarray,
    layout: FeatureLayout,
    scaled_temperature: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs for each origin, and the weekly seasonal-naive forecast (scaled) they correct.

    ``calendar`` must cover ``origin + horizon`` for every origin (see :func:`extend_index`).
    """
    day, horizon, week = layout.steps_per_day, layout.horizon, layout.week
    steps_ahead = np.arange(horizon)
    recent = scaled[origins[:, None] + np.arange(-day, 0)[None, :]]
    naive = scaled[origins[:, None] + steps_ahead[None, :] - week]
    origin_calendar = calendar[origins, :9]
    target_holidays = calendar[origins[:, None] + steps_ahead[None, :], 9]
    source_holidays = calendar[origins[:, None] + steps_ahead[None, :] - week, 9]
    parts = [recent, naive, origin_calendar, target_holidays, source_holidays]
    if layout.use_temperature:
        if scaled_temperature is None:
            raise ValueError("layout uses temperature but none was given")
        parts.append(scaled_temperature[origins[:, None] + np.arange(-day, 0)[None, :]])
    if layout.profile_inputs:
        # Same time of day on each of the last PROFILE_DAYS days; never at or after the origin.
        time_of_day = origins[:, None] + (steps_ahead % day)[None, :]
        profile = np.mean([scaled[time_of_day - k * day] for k in range(1, PROFILE_DAYS + 1)], axis=0)
        parts += [profile - naive, scaled[time_of_day - day] - naive]
    return np.concatenate(parts, axis=1).astype(np.float32), naive.astype(np.float32)


def build_targets(scaled: np.ndarray, origins: np.ndarray, layout: FeatureLayout) -> np.ndarray:
    """The scaled readings of the horizon after each origin."""
    return scaled[origins[:, None] + np.arange(layout.horizon)[None, :]].astype(np.float32)


def complete_origins(
    values: np.ndarray,
    layout: FeatureLayout,
    *,
    first: int,
    last: int,
    stride: int = 1,
    temperature: np.ndarray | None = None,
) -> np.ndarray:
    """Origins in ``[first, last]`` whose inputs and targets are all known.

    Windows touching a gap that cleaning left open are dropped here, so long gaps never enter
    training or scoring.
    """
    first = max(first, layout.lookback)
    last = min(last, len(values) - layout.horizon)
    if last < first:
        return np.empty(0, dtype=np.int64)
    origins = np.arange(first, last + 1, stride)
    missing = _missing_before(values)
    complete = (missing[origins] == missing[origins - layout.lookback]) & (
        missing[origins + layout.horizon] == missing[origins]
    )
    if temperature is not None and layout.use_temperature:  # the inputs hold its last day only
        missing_temperature = _missing_before(temperature)
        complete &= missing_temperature[origins] == missing_temperature[origins - layout.steps_per_day]
    return origins[complete]


def _missing_before(values: np.ndarray) -> np.ndarray:
    """``result[i]`` = missing values in ``values[:i]``: a window is complete when its ends agree."""
    return np.concatenate([[0], np.cumsum(~np.isfinite(values))])
