"""The training pipeline on a real meter, with a tiny budget: stages, backtest, promotion gate, store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config.settings import Settings, TrainingSettings
from forecasting.errors import InsufficientHistoryError, NoHistoryError, TrainingCancelledError
from forecasting.evaluation import BacktestReport, ForecastMetrics
from forecasting.forecasters import SeriesView, load_forecaster
from forecasting.registry import ModelRegistry
from forecasting.training_job import Stage, decide_promotion, run_training_job
from tests.fakes import FrameHistory, RecordedProgress, read_meter

METER = ("pjm_ekpc", "electricity")


@pytest.fixture(scope="module")
def history() -> FrameHistory:
    readings = read_meter("electricity__pjm_ekpc")
    return FrameHistory({METER: readings[readings.index >= readings.index[-1] - pd.Timedelta(days=120)]})


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()  # so two identical trainings give identical models
    return Settings(
        models_dir=tmp_path_factory.mktemp("models"),
        training=TrainingSettings(max_trials=1, epochs=3, backtest_weeks=2),
    )


def _train(history: FrameHistory, settings: Settings, progress: RecordedProgress | None = None) -> dict:
    return run_training_job(
        *METER,
        open_history=lambda: history,
        registry=ModelRegistry(settings.models_dir),
        settings=settings,
        progress=progress or RecordedProgress(),
    )


def test_first_model_is_trained_backtested_saved_and_promoted(
    history: FrameHistory, settings: Settings
) -> None:
    progress = RecordedProgress()

    result = _train(history, settings, progress)

    assert progress.stages == list(Stage)
    assert progress.fractions == sorted(progress.fractions) and progress.fractions[-1] == 1.0
    backtest = result["metrics"]["backtest"]
    # Two weeks of local midnights; the last day is dropped when its 24 hours are not all measured yet.
    assert backtest["origins"] in (13, 14) and backtest["horizon"] == 24
    assert result["metrics"]["skill"] == pytest.approx(
        1 - backtest["model"]["mae"] / backtest["seasonal_naive"]["mae"]
    )
    assert result["promoted"] is True
    active = ModelRegistry(settings.models_dir).active_version(*reversed(METER))
    assert active is not None and str(active.path) == result["details"]["model_path"]
    assert active.metadata["data_quality"]["raw_points"] == result["details"]["data_points"]


def test_an_identical_retrain_does_not_replace_the_active_version(
    history: FrameHistory, settings: Settings
) -> None:
    registry = ModelRegistry(settings.models_dir)
    if registry.active_version(*reversed(METER)) is None:
        _train(history, settings)
    before = registry.active_version(*reversed(METER))

    result = _train(history, settings)

    assert result["promoted"] is False
    assert f"does not beat active version {before.version}" in result["promotion_reason"]
    assert registry.active_version(*reversed(METER)).version == before.version
    assert result["details"]["model_version"] in [v.version for v in registry.list_versions(*reversed(METER))]


def _report(model_mae: float, naive_mae: float) -> BacktestReport:
    def metrics(mae: float) -> ForecastMetrics:
        return ForecastMetrics(mae=mae, rmse=mae, wape=None, mase=None, forecasts=7, points=168)

    return BacktestReport(
        model_kind="keras_mlp",
        window_start=pd.Timestamp("2024-01-01", tz="UTC"),
        window_end=pd.Timestamp("2024-01-08", tz="UTC"),
        origins=7,
        horizon=24,
        model=metrics(model_mae),
        seasonal_naive=metrics(naive_mae),
        skill=1 - model_mae / naive_mae,
    )


@pytest.mark.parametrize(
    ("model_mae", "active_mae", "promoted"),
    [
        (12.0, None, False),  # worse than the seasonal naive (10)
        (8.0, None, True),  # better than naive, nothing active
        (8.0, 9.0, True),  # better than naive and the active version
        (8.0, 7.0, False),  # better than naive, worse than active: keep the old version
        (8.0, 8.0, False),  # a tie keeps the old version
    ],
)
def test_promotion_gate(model_mae: float, active_mae: float | None, promoted: bool) -> None:
    active_version = None if active_mae is None else "20240101T000000Z-abcdef"
    decision, reason = decide_promotion(
        _report(model_mae, 10.0), active_version=active_version, active_mae=active_mae
    )
    assert decision is promoted, reason


def test_no_readings_is_a_data_error(settings: Settings) -> None:
    with pytest.raises(NoHistoryError, match="No readings found for meter 'pjm_ekpc'"):
        _train(FrameHistory(), settings)


def test_short_history_says_what_was_found_and_needed(history: FrameHistory, settings: Settings) -> None:
    short = FrameHistory({METER: history.frames[METER].head(24 * 20)})
    with pytest.raises(InsufficientHistoryError, match=r"found 20\.0 days .* need at least 28 days"):
        _train(short, settings)


def test_cancel_during_training_stops_the_job_and_saves_nothing(
    history: FrameHistory, settings: Settings, tmp_path: Path
) -> None:
    class CancelAtFirstEpoch(RecordedProgress):
        def training(self, fraction: float, message: str) -> None:
            raise TrainingCancelledError("Task cancelled by request")

    isolated = settings.model_copy(update={"models_dir": tmp_path})
    with pytest.raises(TrainingCancelledError):
        _train(history, isolated, CancelAtFirstEpoch())
    assert ModelRegistry(tmp_path).list_meters() == []


def _with_temperature(
    history: FrameHistory, missing_share: float = 0.0, sensor_from: float = 0.0
) -> FrameHistory:
    """The real meter plus a synthetic outdoor temperature (daily cycle on a seasonal drift).

    ``missing_share`` of the readings go missing at random (short gaps, which cleaning fills);
    ``sensor_from`` is the share of the history before the sensor existed.
    """
    frame = history.frames[METER].copy()
    hours = np.arange(len(frame))
    temperature = 15 + 8 * np.sin(2 * np.pi * hours / (24 * 365)) + 5 * np.sin(2 * np.pi * (hours % 24) / 24)
    temperature[np.random.default_rng(3).random(len(frame)) < missing_share] = np.nan
    temperature[: int(sensor_from * len(frame))] = np.nan
    frame["temperature"] = temperature
    return FrameHistory({METER: frame})


def test_temperature_field_is_an_input_when_it_covers_the_history(
    history: FrameHistory, settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"models_dir": tmp_path})
    sparse_gap = _with_temperature(history, missing_share=0.01)

    result = _train(sparse_gap, settings)

    version = ModelRegistry(tmp_path).list_versions(*reversed(METER))[0]
    metadata = version.metadata
    assert metadata["layout"]["use_temperature"] is True
    assert any("temperature" in feature for feature in metadata["features"])
    assert metadata["temperature_scaling"]["scale"] > 1
    forecaster = load_forecaster(version.path, metadata)
    series = SeriesView.from_frame(sparse_gap.frames[METER], forecaster.layout)
    series.temperature[-24:] = np.nan  # the sensor is late: the forecast must still be a number
    forecast = forecaster.forecast_at(series, np.array([len(series.values) - 24]))
    assert forecast.shape == (1, 24) and np.isfinite(forecast).all()
    assert np.isfinite(result["metrics"]["backtest"]["model"]["mae"])


def test_sparse_temperature_is_left_out(history: FrameHistory, settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"models_dir": tmp_path})

    _train(_with_temperature(history, sensor_from=0.5), settings)

    metadata = ModelRegistry(tmp_path).list_versions(*reversed(METER))[0].metadata
    assert metadata["layout"]["use_temperature"] is False
    assert metadata["temperature_scaling"] is None
    notes = metadata["data_quality"]["notes"]
    assert any("temperature field was not used: it covers less than 90%" in note for note in notes), notes
