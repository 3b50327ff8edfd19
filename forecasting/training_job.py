"""One training job, stage by stage: connect, fetch, validate and clean, train and backtest, save.

The job reports its stage through a :class:`JobProgress` the caller supplies; the worker turns
those calls into the statuses users poll. Nothing here knows about Redis or Dramatiq.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib import metadata as package_metadata
from typing import Any, Protocol

import numpy as np
import pandas as pd
import structlog

from config.settings import Settings
from forecasting.cleaning import CleanedHistory, clean_history
from forecasting.errors import (
    InsufficientHistoryError,
    ModelError,
    NoHistoryError,
    TrainingCancelledError,
)
from forecasting.evaluation import (
    BacktestReport,
    backtest,
    day_ahead_origins,
    naive_in_sample_mae,
)
from forecasting.features import FeatureLayout, Scaling, complete_origins
from forecasting.forecasters import (
    Forecaster,
    SeasonalNaiveForecaster,
    SeriesView,
    load_forecaster,
)
from forecasting.meter_history import TEMPERATURE_COLUMN, MeterHistory
from forecasting.mstl_forecaster import MstlForecaster
from forecasting.registry import ModelRegistry, ModelVersion

log = structlog.get_logger("forecasting.training_job")

TRAINING_DAYS_MIN = 14
#: Share of the training window's readings with a temperature for the model to use the field.
TEMPERATURE_MIN_COVERAGE = 0.9


class Stage(StrEnum):
    CONNECTING = "CONNECTING"
    FETCHING_DATA = "FETCHING_DATA"
    VALIDATING_DATA = "VALIDATING_DATA"
    TRAINING_MODEL = "TRAINING_MODEL"
    SAVING_MODEL = "SAVING_MODEL"


class JobProgress(Protocol):
    """Receives a job's progress; either method may raise to stop the job (e.g. on cancel)."""

    def stage(self, stage: Stage, message: str) -> None: ...

    def training(self, fraction: float, message: str) -> None: ...


@dataclass
class StageTimer:
    """Seconds spent per stage, for the result and the job's summary log line."""

    seconds: dict[str, float] = field(default_factory=dict)
    _stage: str | None = None
    _since: float = 0.0

    def enter(self, stage: str) -> None:
        now = time.perf_counter()
        if self._stage is not None:
            self.seconds[self._stage] = round(self.seconds.get(self._stage, 0.0) + now - self._since, 3)
        self._stage, self._since = stage, now

    @property
    def stage(self) -> str | None:
        return self._stage

    def stop(self) -> dict[str, float]:
        self.enter("_done")
        self.seconds.pop("_done", None)
        return self.seconds


def run_training_job(
    meter_id: str,
    meter_type: str,
    *,
    open_history: Callable[[], MeterHistory],
    registry: ModelRegistry,
    settings: Settings,
    progress: JobProgress,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Train, backtest and store a model for one meter; return the job's result document.

    Every run ends with one ``training_job_summary`` log line and its seconds per stage: on success
    with the version, otherwise with the outcome, the error and the stage it stopped in.
    """
    timer = StageTimer()
    try:
        return _train_and_store(
            meter_id,
            meter_type,
            open_history=open_history,
            registry=registry,
            settings=settings,
            progress=progress,
            job_id=job_id,
            timer=timer,
        )
    except BaseException as error:  # also a worker's time limit, raised into the running code
        stage = timer.stage
        log.info(
            "training_job_summary",
            outcome="CANCELLED" if isinstance(error, TrainingCancelledError) else "FAILED",
            error_type=getattr(error, "error_type", None),
            error=type(error).__name__,
            stage=stage,
            **timer.stop(),
        )
        raise


def _train_and_store(
    meter_id: str,
    meter_type: str,
    *,
    open_history: Callable[[], MeterHistory],
    registry: ModelRegistry,
    settings: Settings,
    progress: JobProgress,
    job_id: str | None,
    timer: StageTimer,
) -> dict[str, Any]:
    timer.enter("connect")
    progress.stage(Stage.CONNECTING, "Connecting to InfluxDB")
    history = open_history()
    try:
        history.ping()
        timer.enter("fetch")
        progress.stage(Stage.FETCHING_DATA, "Fetching meter history")
        start = None
        if settings.influxdb.history_days:
            start = datetime.now(UTC) - timedelta(days=settings.influxdb.history_days)
        raw = history.fetch(meter_id, meter_type, start=start)
    finally:
        history.close()
    if raw.empty:
        raise NoHistoryError(meter_id, meter_type)
    log.info(
        "history_fetched",
        points=len(raw),
        first=str(raw.index[0]),
        last=str(raw.index[-1]),
    )

    timer.enter("clean")
    progress.stage(Stage.VALIDATING_DATA, f"Validating and cleaning {len(raw)} readings")
    cleaned = clean_history(raw, meter_type=meter_type, settings=settings.cleaning)
    frame = _limit_training_window(cleaned, settings.training.max_train_days)
    layout = FeatureLayout(
        steps_per_day=int(pd.Timedelta(days=1) / cleaned.resolution),
        horizon=int(pd.Timedelta(hours=settings.training.horizon_hours) / cleaned.resolution),
        timezone=settings.cleaning.timezone,
        holiday_country=settings.cleaning.holiday_country,
        use_temperature=settings.training.use_temperature and _temperature_usable(frame),
    )
    if TEMPERATURE_COLUMN in frame and not layout.use_temperature:
        cleaned.report.notes.append(
            "The temperature field was not used: "
            + (
                "TRAINING__USE_TEMPERATURE is off."
                if not settings.training.use_temperature
                else f"it covers less than {TEMPERATURE_MIN_COVERAGE:.0%} of the training window."
            )
        )
    series = SeriesView.from_frame(frame, layout)
    backtest_origins = _backtest_origins(meter_id, series, layout, cleaned, settings)

    timer.enter("train")
    progress.stage(Stage.TRAINING_MODEL, "Training model")
    from forecasting.training import fit_keras_forecaster, split_origins

    backtest_start = int(backtest_origins[0])
    steps_per_hour = max(1, layout.steps_per_day // 24)
    fit_origins = complete_origins(
        series.values,
        layout,
        first=0,
        last=backtest_start - layout.horizon,
        stride=steps_per_hour,
        temperature=series.temperature,
    )
    samples = split_origins(fit_origins, settings.training.validation_fraction, layout.horizon)
    if len(samples.train) < layout.steps_per_day or len(samples.validation) == 0:
        raise InsufficientHistoryError(
            meter_id,
            found=f"{len(fit_origins)} complete training windows before the backtest window",
            needed=f"at least {TRAINING_DAYS_MIN} days of gap-free history before the last "
            f"{settings.training.backtest_weeks} weeks",
        )
    scaling = Scaling.fit(series.values[:backtest_start])
    temperature_scaling = None
    if layout.use_temperature and series.temperature is not None:
        temperature_scaling = Scaling.fit(series.temperature[:backtest_start])
    fit = fit_keras_forecaster(
        series,
        layout,
        samples,
        scaling=scaling,
        temperature_scaling=temperature_scaling,
        settings=settings.training,
        on_progress=progress.training,
    )

    timer.enter("backtest")
    mase_scale = naive_in_sample_mae(series.values[:backtest_start], season=layout.week)
    keras_report, _ = _backtest(fit.forecaster, series, backtest_origins, mase_scale)
    naive_report, _ = _backtest(SeasonalNaiveForecaster(layout), series, backtest_origins, mase_scale)
    candidates = {fit.forecaster.kind: keras_report}
    challenger = _mstl_challenger(layout, series, backtest_origins, mase_scale, settings)
    if challenger is not None:
        candidates[challenger[0].kind] = challenger[1]
    selected_kind, selection_reason = select_candidate(candidates)
    report = candidates[selected_kind]
    active = registry.active_version(meter_type, meter_id)
    active_mae = None
    if active is not None:
        active_mae = _active_backtest_mae(active, frame, backtest_origins, mase_scale, challenger)
    promoted, reason = decide_promotion(
        report, active_version=active and active.version, active_mae=active_mae
    )
    log.info(
        "backtest_scored",
        selected=selected_kind,
        **{f"{kind}_mae": candidate.model.mae for kind, candidate in candidates.items()},
        naive_mae=report.seasonal_naive.mae,
        skill=report.skill,
        promoted=promoted,
    )

    timer.enter("save")
    progress.stage(Stage.SAVING_MODEL, "Saving model")
    trained_at = datetime.now(UTC)
    metadata: dict[str, Any] = {
        "meter_id": meter_id,
        "meter_type": meter_type,
        "model_kind": selected_kind,
        "selection_reason": selection_reason,
        "trained_at": trained_at.isoformat(),
        "job_id": job_id,
        "horizon_hours": settings.training.horizon_hours,
        "resolution_minutes": int(cleaned.resolution / pd.Timedelta(minutes=1)),
        "features": _describe_features(layout),
        **fit.forecaster.metadata(),
        **({} if challenger is None else challenger[0].metadata_block()),
        "data_window": {
            "start": frame.index[0].isoformat(),
            "end": frame.index[-1].isoformat(),
            "points": int(np.isfinite(series.values).sum()),
            "training_origins": len(samples.train),
            "validation_origins": len(samples.validation),
        },
        "metrics": {
            "validation_mae": round(fit.validation_mae, 6),
            "backtest": report.model_dump(mode="json"),
            "seasonal_naive_backtest": naive_report.model.model_dump(mode="json"),
            "skill": report.skill,
            "candidates": {
                kind: {"backtest": candidate.model.model_dump(mode="json"), "skill": candidate.skill}
                for kind, candidate in candidates.items()
            },
        },
        "hyperparameters": fit.best_hyperparameters,
        "tuning": {"trials": fit.trials, "epochs_run": fit.epochs_run},
        "data_quality": cleaned.report.model_dump(mode="json"),
        "promoted": promoted,
        "promotion_reason": reason,
        "library_versions": _library_versions(),
    }
    version = registry.save_version(
        meter_type,
        meter_id,
        write_artifacts=fit.forecaster.save,
        metadata=metadata,
        activate=promoted,
    )
    stage_seconds = timer.stop()
    log.info(
        "training_job_summary",
        outcome="SUCCESS",
        version=version.version,
        promoted=promoted,
        **stage_seconds,
    )
    return {
        "status": "success",
        "message": f"Model trained for meter {meter_id}"
        + ("" if promoted else f" ({'kept the active model' if active else 'not activated'}: {reason})"),
        "details": {
            "meter_id": meter_id,
            "meter_type": meter_type,
            "data_points": len(raw),
            "model_path": version.display_path,
            "model_version": version.version,
            "model_kind": selected_kind,
            "training_completed": trained_at.isoformat(),
            "features": metadata["features"],
            "data_fetch_time_seconds": stage_seconds.get("fetch", 0.0),
            "training_time_seconds": round(
                stage_seconds.get("train", 0.0) + stage_seconds.get("backtest", 0.0), 3
            ),
            "stage_seconds": stage_seconds,
        },
        "metrics": metadata["metrics"],
        "promoted": promoted,
        "promotion_reason": reason,
        "model_kind": selected_kind,
        "selection_reason": selection_reason,
        "data_quality": metadata["data_quality"],
    }


def _limit_training_window(cleaned: CleanedHistory, max_days: int | None) -> pd.DataFrame:
    frame = cleaned.frame
    if max_days is None or frame.empty:
        return frame
    return frame[frame.index >= frame.index[-1] - pd.Timedelta(days=max_days)]


def _backtest_origins(
    meter_id: str,
    series: SeriesView,
    layout: FeatureLayout,
    cleaned: CleanedHistory,
    settings: Settings,
) -> np.ndarray:
    """Day-ahead origins of the backtest window, shrunk on short histories, or a DATA failure."""
    usable_days = cleaned.report.usable_days
    needed_days = max(settings.training.min_history_days, 7 + TRAINING_DAYS_MIN + 7)
    spare_weeks = int((len(series.values) / layout.steps_per_day - 7 - TRAINING_DAYS_MIN) // 7)
    weeks = min(settings.training.backtest_weeks, spare_weeks)
    origins: list[int] = []
    if usable_days >= needed_days and weeks >= 1:
        candidates = day_ahead_origins(
            series.index,
            weeks=weeks,
            horizon_steps=layout.horizon,
            steps_per_day=layout.steps_per_day,
            timezone=layout.timezone,
        )
        complete = set(complete_origins(series.values, layout, first=0, last=len(series.values)).tolist())
        origins = [origin for origin in candidates if origin in complete]
    if usable_days < needed_days or len(origins) < 3:
        report = cleaned.report
        raise InsufficientHistoryError(
            meter_id,
            found=f"{usable_days:.1f} days of usable readings ({report.usable_points} points, "
            f"{report.first_timestamp} to {report.last_timestamp}, "
            f"{len(origins)} complete day-ahead backtest days)",
            needed=f"at least {needed_days} days of mostly gap-free history "
            f"at {int(cleaned.resolution / pd.Timedelta(minutes=1))}-minute resolution",
        )
    return np.asarray(origins, dtype=np.int64)


def _backtest(
    forecaster: Forecaster, series: SeriesView, origins: np.ndarray, mase_scale: float
) -> tuple[BacktestReport, np.ndarray]:
    """The forecaster's backtest report and its forecast errors (actual - forecast) per origin."""
    layout = forecaster.layout
    predicted = np.asarray(forecaster.forecast_at(series, origins), dtype=float)
    forecasts = dict(zip(origins.tolist(), predicted, strict=True))
    report = backtest(
        series.values,
        origins.tolist(),
        lambda origin: forecasts[origin],
        horizon=layout.horizon,
        season=layout.week,
        mase_scale=mase_scale,
        model_kind=forecaster.kind,
        index=series.index,
    )
    actual = series.values[origins[:, None] + np.arange(layout.horizon)[None, :]]
    return report, actual - predicted


def _mstl_challenger(
    layout: FeatureLayout,
    series: SeriesView,
    origins: np.ndarray,
    mase_scale: float,
    settings: Settings,
) -> tuple[MstlForecaster, BacktestReport] | None:
    """MSTL backtested on the network's window, with P10/P90 from its own backtest errors.

    A challenger never fails the job: if it cannot forecast this meter, the network stands alone.
    """
    training = settings.training
    if "mstl" not in training.challengers:
        return None
    forecaster = MstlForecaster.for_layout(layout, window_days=training.mstl_window_days)
    try:
        report, errors = _backtest(forecaster, series, origins, mase_scale)
    except Exception as error:  # statsforecast raises bare Exception; see the docstring
        log.warning("challenger_failed", kind=forecaster.kind, error=str(error))
        return None
    if report.model.mae is None:
        return None
    with np.errstate(all="ignore"):
        forecaster.interval_low = np.minimum(np.nan_to_num(np.nanquantile(errors, 0.1, axis=0)), 0.0)
        forecaster.interval_high = np.maximum(np.nan_to_num(np.nanquantile(errors, 0.9, axis=0)), 0.0)
    return forecaster, report


def select_candidate(candidates: dict[str, BacktestReport]) -> tuple[str, str]:
    """The kind with the lowest backtest MAE, and why; the network wins ties (it is the primary)."""
    scored = {kind: report.model.mae for kind, report in candidates.items() if report.model.mae is not None}
    primary = next(iter(candidates))
    if not scored:
        return primary, "no candidate could be scored on the backtest window"
    best = min(scored, key=lambda kind: (scored[kind], kind != primary))
    others = ", ".join(f"{kind} {mae:.4g}" for kind, mae in scored.items() if kind != best)
    if not others:
        return best, f"{best} is the only candidate scored (backtest MAE {scored[best]:.4g})"
    return best, f"lowest backtest MAE: {best} {scored[best]:.4g} vs {others}"


def _active_backtest_mae(
    active: ModelVersion,
    frame: pd.DataFrame,
    origins: np.ndarray,
    mase_scale: float,
    challenger: tuple[MstlForecaster, BacktestReport] | None,
) -> float | None:
    """The active version's MAE on the new backtest window, or None if it cannot be scored."""
    try:
        forecaster = load_forecaster(active.path, active.metadata)
        if (
            challenger is not None
            and isinstance(forecaster, MstlForecaster)
            and (forecaster.layout, forecaster.window_steps)
            == (challenger[0].layout, challenger[0].window_steps)
        ):
            # MSTL has no trained state: the active version would repeat this job's refits exactly.
            return challenger[1].model.mae
        report, _ = _backtest(
            forecaster, SeriesView.from_frame(frame, forecaster.layout), origins, mase_scale
        )
    except (ModelError, KeyError, ValueError, IndexError) as error:
        log.warning("active_model_unusable", version=active.version, error=str(error))
        return None
    return report.model.mae


def decide_promotion(
    report: BacktestReport, *, active_version: str | None, active_mae: float | None
) -> tuple[bool, str]:
    """Promote only a model that beats the weekly seasonal naive and the active version.

    Both comparisons use the same backtest window, so a retrain on new data is judged against the
    active model's forecasts for exactly the days the new model was scored on.
    """
    model_mae, naive_mae = report.model.mae, report.seasonal_naive.mae
    if report.skill is None or report.skill <= 0 or model_mae is None:
        return False, (
            f"backtest MAE {_figure(model_mae)} does not beat the weekly seasonal naive ({_figure(naive_mae)})"
        )
    if active_version is None:
        return True, f"beats the weekly seasonal naive (skill {report.skill:.3f}); no active version"
    if active_mae is None:
        return True, f"beats the weekly seasonal naive; active version {active_version} could not be scored"
    if model_mae < active_mae:
        return True, (
            f"backtest MAE {model_mae:.4g} beats active version {active_version} ({active_mae:.4g}) "
            f"and the seasonal naive ({naive_mae:.4g})"
        )
    return False, (
        f"backtest MAE {model_mae:.4g} does not beat active version {active_version} "
        f"({active_mae:.4g}) on the same window"
    )


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _temperature_usable(frame: pd.DataFrame) -> bool:
    """Whether the meter's ``temperature`` field covers enough of the training window to learn from.

    Windows with a missing temperature are left out of training, so a sparse field would cost most
    of the history; below this coverage the model goes without it.
    """
    if TEMPERATURE_COLUMN not in frame:
        return False
    return bool(frame[TEMPERATURE_COLUMN].notna().mean() >= TEMPERATURE_MIN_COVERAGE)


def _describe_features(layout: FeatureLayout) -> list[str]:
    features = [
        f"last {layout.steps_per_day} readings (one day)",
        f"weekly seasonal naive for the {layout.horizon} horizon steps",
        "local hour (sin, cos) and weekday of the forecast origin",
        f"public holidays ({layout.holiday_country or 'none'}) of target and source days",
    ]
    if layout.profile_inputs:
        features.append(
            "mean of the last 7 days and the day before at the same time of day, blended linearly"
        )
    if layout.use_temperature:
        features.append("temperature over the last day (missing readings count as the training mean)")
    return features


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in (
        "tensorflow-cpu",
        "tensorflow",
        "keras",
        "keras-tuner",
        "numpy",
        "pandas",
    ):
        try:
            versions[package] = package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            continue
    return versions
