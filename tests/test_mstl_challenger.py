"""The MSTL challenger: its window, its forecasts, how a job picks between it and the network."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from config.settings import Settings, TrainingSettings
from forecasting.errors import DataError
from forecasting.evaluation import BacktestReport, ForecastMetrics
from forecasting.features import FeatureLayout
from forecasting.forecasters import SeasonalNaiveForecaster, SeriesView, load_forecaster
from forecasting.mstl_forecaster import MstlForecaster
from forecasting.registry import ModelRegistry
from forecasting.serving import ForecasterCache, forecast_table
from forecasting.training_job import run_training_job, select_candidate
from tests.fakes import FrameHistory, RecordedProgress, read_meter

HOURLY = FeatureLayout(steps_per_day=24, horizon=24)
QUARTER_HOURLY = FeatureLayout(steps_per_day=96, horizon=96)
METER = ("pjm_ekpc", "electricity")


def test_window_is_whole_days_and_sub_hourly_meters_decompose_hours() -> None:
    hourly = MstlForecaster.for_layout(HOURLY, window_days=56)
    quarter_hourly = MstlForecaster.for_layout(QUARTER_HOURLY, window_days=56)

    assert (hourly.window_steps, hourly.steps_per_block, hourly.lookback_days) == (56 * 24, 1, 56)
    assert (quarter_hourly.window_steps, quarter_hourly.steps_per_block) == (56 * 96, 4)


def _trending_week(days: int) -> SeriesView:
    """Daily and weekly seasons on a rising level: last week's value is always too low."""
    index = pd.date_range("2024-01-01", periods=days * 24, freq="h", tz="UTC")
    steps = np.arange(len(index))
    rng = np.random.default_rng(7)
    values = (
        100
        + 0.05 * steps
        + 10 * np.sin(2 * np.pi * steps / 24)
        + 5 * np.sin(2 * np.pi * steps / 168)
        + rng.normal(0, 0.5, len(index))
    )
    return SeriesView.from_frame(pd.DataFrame({"value": values}, index=index), HOURLY)


def test_mstl_follows_a_trend_the_weekly_naive_misses() -> None:
    series = _trending_week(days=70)
    origins = np.arange(63 * 24, 69 * 24 + 1, 24)
    actual = series.values[origins[:, None] + np.arange(24)[None, :]]

    mstl = MstlForecaster.for_layout(HOURLY, window_days=56).forecast_at(series, origins)
    naive = SeasonalNaiveForecaster(HOURLY).forecast_at(series, origins)

    naive_mae = np.mean(np.abs(actual - naive))  # the trend's rise over one week: 0.05 * 168 = 8.4
    assert naive_mae == pytest.approx(8.4, abs=0.5)
    assert np.mean(np.abs(actual - mstl)) < 0.25 * naive_mae


def test_interior_gaps_are_filled_and_too_short_a_window_is_a_data_error() -> None:
    series = _trending_week(days=30)
    values = series.values.copy()
    values[20 * 24 : 20 * 24 + 5] = np.nan
    gappy = SeriesView(series.index, values, None, series.calendar)
    forecaster = MstlForecaster.for_layout(HOURLY, window_days=56)

    assert np.isfinite(forecaster.forecast_at(gappy, np.array([28 * 24]))).all()
    with pytest.raises(DataError, match="MSTL needs 2 weeks"):
        forecaster.forecast_at(gappy, np.array([13 * 24]))


def _report(kind: str, mae: float | None) -> BacktestReport:
    metrics = ForecastMetrics(mae=mae, rmse=mae, wape=None, mase=None, forecasts=7, points=168)
    naive = ForecastMetrics(mae=10.0, rmse=10.0, wape=None, mase=None, forecasts=7, points=168)
    return BacktestReport(
        model_kind=kind,
        window_start="2024-01-01T00:00:00Z",
        window_end="2024-01-07T23:00:00Z",
        origins=7,
        horizon=24,
        model=metrics,
        seasonal_naive=naive,
        skill=None if mae is None else 1 - mae / 10.0,
    )


@pytest.mark.parametrize(
    ("keras_mae", "mstl_mae", "selected"),
    [(5.0, 6.0, "keras_mlp"), (6.0, 5.0, "mstl"), (5.0, 5.0, "keras_mlp"), (None, 5.0, "mstl")],
)
def test_the_lowest_backtest_mae_is_selected_and_the_network_wins_ties(
    keras_mae: float | None, mstl_mae: float, selected: str
) -> None:
    kind, reason = select_candidate(
        {"keras_mlp": _report("keras_mlp", keras_mae), "mstl": _report("mstl", mstl_mae)}
    )

    assert kind == selected
    assert f"{selected} " in reason


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, FrameHistory, Settings]:
    readings = read_meter("electricity__pjm_ekpc")
    history = FrameHistory({METER: readings[readings.index >= readings.index[-1] - pd.Timedelta(days=100)]})
    settings = Settings(
        models_dir=tmp_path_factory.mktemp("models"),
        training=TrainingSettings(max_trials=1, epochs=3, backtest_weeks=2),
    )
    result = run_training_job(
        *METER,
        open_history=lambda: history,
        registry=ModelRegistry(settings.models_dir),
        settings=settings,
        progress=RecordedProgress(),
    )
    return result, history, settings


def test_a_job_backtests_both_kinds_on_one_window_and_keeps_the_better(trained) -> None:
    result, _, settings = trained

    candidates = result["metrics"]["candidates"]
    assert set(candidates) == {"keras_mlp", "mstl"}
    best = min(candidates, key=lambda kind: candidates[kind]["backtest"]["mae"])
    assert result["model_kind"] == result["details"]["model_kind"] == best
    assert result["metrics"]["backtest"]["model"] == candidates[best]["backtest"]
    assert result["selection_reason"].startswith(f"lowest backtest MAE: {best}")
    assert all(candidate["backtest"]["points"] > 0 for candidate in candidates.values())

    version = ModelRegistry(settings.models_dir).active_version(*reversed(METER))
    assert version is not None and version.metadata["model_kind"] == best
    assert load_forecaster(version.path, version.metadata).kind == best
    # The network is the primary model: its file is kept whichever kind serves.
    assert (version.path / "model.keras").is_file()
    assert version.metadata["mstl"]["window_steps"] == 56 * 24


def test_an_mstl_version_serves_forecasts_with_intervals(trained) -> None:
    _, history, settings = trained
    registry = ModelRegistry(settings.models_dir)
    keras_version = registry.active_version(*reversed(METER))
    metadata = {key: value for key, value in keras_version.metadata.items() if key != "version"}
    registry.save_version(
        *reversed(METER),
        write_artifacts=lambda directory: None,
        metadata=metadata | {"model_kind": "mstl"},
        activate=True,
    )

    table = forecast_table(
        *METER,
        start_date=date(2018, 8, 2),
        end_date=date(2018, 8, 4),
        resolution="hourly",
        use_fallback=False,
        history=history,
        registry=registry,
        cache=ForecasterCache(),
        settings=settings,
    )

    assert table.model_kind == "mstl"
    forecasts = [row for row in table.rows if row["type"] == "forecast"]
    assert len(forecasts) == 24
    assert all(row["p10"] <= row["value"] <= row["p90"] for row in forecasts)
    assert all(row["p90"] > row["p10"] for row in forecasts)


def test_a_quarter_hourly_meter_is_decomposed_by_hour_and_keeps_its_shape_within_the_hour() -> None:
    days = 63
    index = pd.date_range("2024-01-01", periods=days * 96, freq="15min", tz="UTC")
    hours = np.arange(len(index)) / 4
    within_hour = np.tile([3.0, -1.0, -1.0, -1.0], days * 24)  # a pump that starts every hour
    values = 100 + 0.05 * hours + 10 * np.sin(2 * np.pi * hours / 24) + within_hour
    series = SeriesView.from_frame(pd.DataFrame({"value": values}, index=index), QUARTER_HOURLY)
    # The last origin is mid-hour, as when a forecast starts after the latest reading.
    origins = np.array([60 * 96, 61 * 96, 62 * 96 - 2])
    actual = series.values[origins[:, None] + np.arange(96)[None, :]]

    mstl = MstlForecaster.for_layout(QUARTER_HOURLY, window_days=56).forecast_at(series, origins)
    naive = SeasonalNaiveForecaster(QUARTER_HOURLY).forecast_at(series, origins)

    assert np.mean(np.abs(actual - mstl)) < 0.25 * np.mean(np.abs(actual - naive))
    first_hour, measured_hour = mstl[0, :4], actual[0, :4]
    assert np.allclose(first_hour - first_hour.mean(), measured_hour - measured_hour.mean(), atol=0.3)
    assert first_hour[0] - first_hour.mean() > 2  # the start-of-hour peak is forecast
