"""Fit the Keras forecaster: keras-tuner search within a budget, early stopping, time-ordered split.

This module imports TensorFlow; only the worker's training path imports it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from config.settings import TrainingSettings
from forecasting.errors import ForecastingError, ModelError
from forecasting.features import FeatureLayout, Scaling, build_inputs, build_targets
from forecasting.forecasters import KerasForecaster, SeriesView

#: Temporary keras-tuner folders are named ``<prefix><pid>-<random>`` so orphans can be recognised.
TUNER_DIR_PREFIX = "ef-tuner-"

#: Called with the fraction of the training budget used (0..1) and a short message.
TrainingProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class FitSamples:
    """Time-ordered training and validation origins (validation strictly after training)."""

    train: np.ndarray
    validation: np.ndarray


@dataclass(frozen=True)
class FitReport:
    forecaster: KerasForecaster
    validation_mae: float
    trials: int
    epochs_run: int
    best_hyperparameters: dict[str, Any]


def configure_tensorflow(threads: int) -> None:
    """Size TensorFlow's thread pools before the first op runs (``WorkerSettings.tensorflow_threads``).

    Called once per worker process: TF's defaults oversubscribe a 2-core box when several
    worker processes train at once.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:
        pass  # already initialised in this process; the first setting stays


def remove_orphaned_tuner_dirs(temp_dir: Path | None = None) -> int:
    """Delete tuner folders whose process is gone (a worker killed mid-search); returns how many.

    A SIGKILLed worker never reaches the ``finally`` that removes its folder, and trial checkpoints
    are megabytes each; every worker calls this at boot.
    """
    removed = 0
    for entry in Path(temp_dir or tempfile.gettempdir()).glob(f"{TUNER_DIR_PREFIX}*"):
        pid = entry.name[len(TUNER_DIR_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _process_alive(int(pid)) or not entry.is_dir():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def split_origins(origins: np.ndarray, validation_fraction: float, horizon: int) -> FitSamples:
    """The last ``validation_fraction`` of origins (by time) validate; never a random split.

    Validation origins whose targets overlap the last training targets are dropped, so early
    stopping never scores steps the network was fitted on.
    """
    cut = int(len(origins) * (1 - validation_fraction))
    train, validation = origins[:cut], origins[cut:]
    if len(train):
        validation = validation[validation >= train[-1] + horizon]
    return FitSamples(train=train, validation=validation)


class _ProgressCallback:
    """Reports tuner trial and epoch progress; shared across keras-tuner's per-trial copies."""

    def __init__(self, on_progress: TrainingProgress, trials: int, epochs: int) -> None:
        import keras

        class _Callback(keras.callbacks.Callback):
            def __deepcopy__(inner_self, memo: dict[int, Any]) -> Any:
                return inner_self  # keras-tuner deep-copies callbacks per trial; keep one counter

            def on_train_begin(inner_self, logs: dict[str, Any] | None = None) -> None:
                self.trial += 1

            def on_epoch_end(inner_self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                self.epochs_run += 1
                done = (self.trial - 1 + (epoch + 1) / self.epochs) / self.trials
                loss = (logs or {}).get("val_loss")
                message = f"Trial {self.trial}/{self.trials}, epoch {epoch + 1}/{self.epochs}"
                if loss is not None:
                    message += f", val_loss {loss:.4f}"
                try:
                    self.on_progress(min(done, 1.0), message)
                except ForecastingError as error:
                    import keras_tuner

                    raise keras_tuner.errors.FatalError(str(error)) from error

        self.on_progress, self.trials, self.epochs = on_progress, trials, epochs
        self.trial = 0
        self.epochs_run = 0
        self.keras_callback = _Callback()


def fit_keras_forecaster(
    series: SeriesView,
    layout: FeatureLayout,
    samples: FitSamples,
    *,
    scaling: Scaling,
    settings: TrainingSettings,
    on_progress: TrainingProgress,
    temperature_scaling: Scaling | None = None,
) -> FitReport:
    """Search hyperparameters with keras-tuner and return the best network as a forecaster.

    Each job tunes in its own temporary folder, removed afterwards, so concurrent jobs never
    share or resume each other's trials.
    """
    import keras
    import keras_tuner

    from forecasting.keras_model import build_model

    # Forget the previous job's graphs and layer names. keras-tuner also clears the session before
    # each trial's build (``Tuner._try_build``); this one covers the first build of a job either way.
    keras.backend.clear_session()
    keras.utils.set_random_seed(settings.seed)
    scaled = scaling.apply(series.values)
    scaled_temperature = None
    if layout.use_temperature:
        if temperature_scaling is None or series.temperature is None:
            raise ValueError("layout uses temperature: give the series' temperature and its scaling")
        scaled_temperature = temperature_scaling.apply(series.temperature)
    train_x, train_naive = build_inputs(scaled, series.calendar, samples.train, layout, scaled_temperature)
    train_y = build_targets(scaled, samples.train, layout) - train_naive
    val_x, val_naive = build_inputs(scaled, series.calendar, samples.validation, layout, scaled_temperature)
    val_y = build_targets(scaled, samples.validation, layout) - val_naive

    progress = _ProgressCallback(on_progress, settings.max_trials, settings.epochs)
    tuner_dir = tempfile.mkdtemp(prefix=f"{TUNER_DIR_PREFIX}{os.getpid()}-")
    try:
        tuner = keras_tuner.RandomSearch(
            hypermodel=lambda hp: build_model(
                hp,
                input_width=layout.input_width,
                horizon=layout.horizon,
                profile_inputs=layout.profile_inputs,
            ),
            objective="val_loss",
            max_trials=settings.max_trials,
            seed=settings.seed,
            directory=tuner_dir,
            project_name="search",
            overwrite=True,
            max_consecutive_failed_trials=1,
        )
        tuner.search(
            train_x,
            train_y,
            validation_data=(val_x, val_y),
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping(
                    monitor="val_loss",
                    patience=settings.patience,
                    restore_best_weights=True,
                ),
                progress.keras_callback,
            ],
        )
        try:
            with warnings.catch_warnings():
                # The best trial's checkpoint holds optimizer state we deliberately do not restore.
                warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
                model = tuner.get_best_models(num_models=1)[0]
        except (IndexError, ValueError) as error:
            raise ModelError("Hyperparameter search finished without a usable model") from error
        best_hp = tuner.get_best_hyperparameters(1)[0].values
    except keras_tuner.errors.FatalError as error:
        cause = _forecasting_cause(error)
        if cause is not None:
            raise cause from None
        raise ModelError(f"Training failed: {error}") from error
    finally:
        shutil.rmtree(tuner_dir, ignore_errors=True)

    validation_forecast = np.asarray(model(val_x, training=False)) + val_naive
    errors = scaling.invert(build_targets(scaled, samples.validation, layout)) - scaling.invert(
        validation_forecast
    )
    if not np.all(np.isfinite(validation_forecast)):
        raise ModelError("The trained network produces non-finite forecasts")
    low = np.minimum(np.quantile(errors, 0.1, axis=0), 0.0)
    high = np.maximum(np.quantile(errors, 0.9, axis=0), 0.0)
    forecaster = KerasForecaster(
        model=model,
        layout=layout,
        scaling=scaling,
        interval_low=low,
        interval_high=high,
        temperature_scaling=temperature_scaling,
    )
    return FitReport(
        forecaster=forecaster,
        validation_mae=float(np.mean(np.abs(errors))),
        trials=progress.trial,
        epochs_run=progress.epochs_run,
        best_hyperparameters=dict(best_hp),
    )


def _forecasting_cause(error: BaseException) -> ForecastingError | None:
    """The ForecastingError (e.g. a cancellation) keras-tuner wrapped, however deep."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ForecastingError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
