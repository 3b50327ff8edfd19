"""Forecasters: objects that turn a meter's cleaned history into the next horizon of values.

Training, backtesting, the promotion gate and the forecast API all go through ``forecast_at``, so
a backtest scores exactly the code path that serves forecasts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from forecasting.errors import ModelError
from forecasting.features import (
    FeatureLayout,
    Scaling,
    build_inputs,
    calendar_features,
    extend_index,
)
from forecasting.mstl_forecaster import MSTL_KIND, MstlForecaster

MODEL_FILE = "model.keras"
KERAS_KIND = "keras_mlp"
NAIVE_KIND = "seasonal_naive"


@dataclass(frozen=True)
class SeriesView:
    """A cleaned series as arrays, with the calendar already computed for the model's horizon."""

    index: pd.DatetimeIndex
    values: np.ndarray
    temperature: np.ndarray | None
    calendar: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, layout: FeatureLayout) -> SeriesView:
        index = pd.DatetimeIndex(frame.index)
        calendar = calendar_features(
            extend_index(index, layout.horizon),
            timezone=layout.timezone,
            holiday_country=layout.holiday_country,
        )
        temperature = frame["temperature"].to_numpy(float) if "temperature" in frame else None
        return cls(index, frame["value"].to_numpy(float), temperature, calendar)


class Forecaster(Protocol):
    kind: str
    layout: FeatureLayout

    def forecast_at(self, series: SeriesView, origins: np.ndarray) -> np.ndarray:
        """Forecast ``(len(origins), horizon)`` values, each from the readings before its origin."""
        ...


@dataclass
class SeasonalNaiveForecaster:
    """Last week's same steps: what an analyst does by hand, and the bar every model must clear."""

    layout: FeatureLayout
    kind: str = NAIVE_KIND

    def forecast_at(self, series: SeriesView, origins: np.ndarray) -> np.ndarray:
        steps = np.arange(self.layout.horizon)
        return series.values[origins[:, None] + steps[None, :] - self.layout.week]


@dataclass
class KerasForecaster:
    """The trained network plus what it needs to build its inputs."""

    model: Any  # keras.Model; typed loosely so this module imports without TensorFlow
    layout: FeatureLayout
    scaling: Scaling
    kind: str = KERAS_KIND
    interval_low: np.ndarray | None = field(default=None)
    interval_high: np.ndarray | None = field(default=None)
    #: The training data's temperature scaling; set when ``layout.use_temperature``.
    temperature_scaling: Scaling | None = None

    def forecast_at(self, series: SeriesView, origins: np.ndarray) -> np.ndarray:
        if len(origins) == 0:
            return np.empty((0, self.layout.horizon))
        inputs, naive = build_inputs(
            self.scaling.apply(series.values),
            series.calendar,
            origins,
            self.layout,
            self.scaled_temperature(series),
        )
        residual = np.asarray(self.model(inputs, training=False))
        return self.scaling.invert(naive + residual)

    def scaled_temperature(self, series: SeriesView) -> np.ndarray | None:
        """The series' temperature in training units; a missing reading counts as the training mean.

        Training only uses windows with every temperature known; at forecast time a missing one
        (a late or broken sensor) must not turn the forecast into NaN, and the mean is the
        least-informative stand-in.
        """
        if not self.layout.use_temperature:
            return None
        if self.temperature_scaling is None:
            raise ModelError("The model uses temperature but has no temperature scaling")
        if series.temperature is None:
            return np.zeros(len(series.values))
        return np.nan_to_num(self.temperature_scaling.apply(series.temperature), nan=0.0)

    def save(self, directory: Path) -> None:
        self.model.save(directory / MODEL_FILE)

    def metadata(self) -> dict[str, Any]:
        return {
            "layout": self.layout.to_dict(),
            "scaling": {"center": self.scaling.center, "scale": self.scaling.scale},
            "temperature_scaling": None
            if self.temperature_scaling is None
            else {"center": self.temperature_scaling.center, "scale": self.temperature_scaling.scale},
            "interval": {
                "low": None if self.interval_low is None else self.interval_low.tolist(),
                "high": None if self.interval_high is None else self.interval_high.tolist(),
                "quantiles": [0.1, 0.9],
            },
        }


AnyForecaster = KerasForecaster | SeasonalNaiveForecaster | MstlForecaster


def load_forecaster(version_dir: Path, metadata: dict[str, Any]) -> AnyForecaster:
    """Rebuild the forecaster a model version serves (its ``model_kind``)."""
    layout = FeatureLayout.from_dict(metadata["layout"])
    if metadata.get("model_kind") == NAIVE_KIND:
        return SeasonalNaiveForecaster(layout)
    if metadata.get("model_kind") == MSTL_KIND:
        try:
            return MstlForecaster.from_metadata(metadata)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"MSTL settings in {version_dir.name} are unreadable: {error}") from error
    import keras

    try:
        model = keras.saving.load_model(version_dir / MODEL_FILE, compile=False)
    except (OSError, ValueError) as error:
        raise ModelError(f"Model file in {version_dir.name} cannot be loaded: {error}") from error
    interval = metadata.get("interval") or {}
    temperature_scaling = metadata.get("temperature_scaling")
    return KerasForecaster(
        model=model,
        layout=layout,
        scaling=Scaling(**metadata["scaling"]),
        temperature_scaling=None if temperature_scaling is None else Scaling(**temperature_scaling),
        interval_low=None if interval.get("low") is None else np.asarray(interval["low"]),
        interval_high=None if interval.get("high") is None else np.asarray(interval["high"]),
    )


def read_metadata(version_dir: Path) -> dict[str, Any]:
    return json.loads((version_dir / "metadata.json").read_text(encoding="utf-8"))
