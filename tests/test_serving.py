"""Forecast answers: measured history, then the active model's forecast with intervals; clear errors."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from config.settings import CleaningSettings, Settings, TrainingSettings
from forecasting import serving
from forecasting.errors import DataError, ModelNotFoundError
from forecasting.registry import ModelRegistry
from forecasting.serving import ForecasterCache, ForecastTable, forecast_table
from forecasting.training_job import run_training_job
from tests.fakes import FrameHistory, RecordedProgress, read_meter

METER = ("pjm_ekpc", "electricity")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[FrameHistory, Settings, ModelRegistry]:
    readings = read_meter("electricity__pjm_ekpc")
    history = FrameHistory({METER: readings[readings.index >= readings.index[-1] - pd.Timedelta(days=90)]})
    settings = Settings(
        models_dir=tmp_path_factory.mktemp("models"),
        training=TrainingSettings(max_trials=1, epochs=3, backtest_weeks=2),
    )
    registry = ModelRegistry(settings.models_dir)
    result = run_training_job(
        *METER,
        open_history=lambda: history,
        registry=registry,
        settings=settings,
        progress=RecordedProgress(),
    )
    assert result["promoted"], result["promotion_reason"]
    return history, settings, registry


def _forecast(
    trained: tuple[FrameHistory, Settings, ModelRegistry], meter: tuple[str, str] = METER, **overrides: object
) -> ForecastTable:
    history, settings, registry = trained
    request: dict[str, object] = {
        "start_date": date(2018, 8, 2),
        "end_date": date(2018, 8, 4),
        "resolution": "hourly",
        "use_fallback": False,
        "history": history,
        "registry": registry,
        "cache": ForecasterCache(),
        "settings": settings,
    }
    return forecast_table(*meter, **(request | overrides))  # type: ignore[arg-type]


def test_hourly_rows_are_history_then_a_24_hour_forecast_inside_its_interval(trained) -> None:
    table = _forecast(trained)

    kinds = [row["type"] for row in table.rows]
    first_forecast = kinds.index("forecast")
    assert set(kinds[:first_forecast]) == {"historical"} and set(kinds[first_forecast:]) == {"forecast"}
    forecasts = table.rows[first_forecast:]
    assert len(forecasts) == 24
    assert all(row["p10"] <= row["value"] <= row["p90"] for row in forecasts)
    active = trained[2].active_version(*reversed(METER))
    assert table.model_version == active.version
    assert table.model_kind == active.metadata["model_kind"] in ("keras_mlp", "mstl")
    last_measured = pd.Timestamp(table.rows[first_forecast - 1]["datetime"])
    assert pd.Timestamp(forecasts[0]["datetime"]) - last_measured == pd.Timedelta(hours=1)


def test_daily_rows_sum_the_hours_of_each_day(trained) -> None:
    hourly = _forecast(trained, start_date=date(2018, 8, 1), end_date=date(2018, 8, 1))
    daily = _forecast(trained, start_date=date(2018, 8, 1), end_date=date(2018, 8, 1), resolution="daily")

    assert len(daily.rows) == 1 and daily.rows[0]["type"] == "historical"
    assert daily.rows[0]["value"] == pytest.approx(sum(row["value"] for row in hourly.rows))


def _coverage(table: ForecastTable) -> list[tuple[str, str, float, float, bool]]:
    return [
        (row["datetime"][:10], row["type"], row["hours"], row["forecast_hours"], row["complete"])
        for row in table.rows
    ]


def test_daily_rows_say_how_much_of_each_day_they_cover(trained) -> None:
    # The last reading is 2018-08-03 03:00 UTC, so the 24 h forecast ends at 2018-08-04 03:00.
    daily = _forecast(trained, resolution="daily")

    assert _coverage(daily) == [
        ("2018-08-02", "historical", 24.0, 0.0, True),
        ("2018-08-03", "forecast", 24.0, 20.0, True),  # 4 measured hours, then the forecast
        ("2018-08-04", "forecast", 4.0, 4.0, False),  # the horizon ends at 04:00
    ]
    hourly = _forecast(trained)
    assert all("complete" not in row for row in hourly.rows), "hourly rows keep their shape"


def test_a_day_cut_by_the_start_of_the_data_or_a_gap_is_incomplete(trained) -> None:
    readings = trained[0].frames[METER]
    late = readings[readings.index >= "2018-07-20T03:00Z"]
    gap = (readings.index >= "2018-08-01T06:00Z") & (readings.index < "2018-08-01T14:00Z")
    history = FrameHistory({("late", "electricity"): late, ("gappy", "electricity"): readings[~gap]})
    baseline = {"history": history, "use_fallback": True, "resolution": "daily"}

    start = _forecast(
        trained, ("late", "electricity"), start_date=date(2018, 7, 20), end_date=date(2018, 7, 28), **baseline
    )
    gapped = _forecast(
        trained, ("gappy", "electricity"), start_date=date(2018, 8, 1), end_date=date(2018, 8, 1), **baseline
    )

    assert _coverage(start)[:2] == [
        ("2018-07-20", "historical", 21.0, 0.0, False),  # the data start at 03:00
        ("2018-07-21", "historical", 24.0, 0.0, True),
    ]
    assert all(row["complete"] for row in start.rows[1:])
    assert _coverage(gapped) == [("2018-08-01", "historical", 16.0, 0.0, False)]


def test_a_25_hour_local_day_is_complete(trained) -> None:
    settings = trained[1]
    readings = read_meter("electricity__pjm_ekpc")
    autumn = readings[(readings.index >= "2017-10-20") & (readings.index < "2017-11-06T05:00Z")]
    new_york = settings.model_copy(update={"cleaning": CleaningSettings(timezone="America/New_York")})

    table = _forecast(
        trained,
        meter=("dst", "electricity"),
        history=FrameHistory({("dst", "electricity"): autumn}),
        use_fallback=True,
        settings=new_york,
        start_date=date(2017, 11, 4),
        end_date=date(2017, 11, 5),
        resolution="daily",
    )

    assert _coverage(table) == [
        ("2017-11-04", "historical", 24.0, 0.0, True),
        ("2017-11-05", "historical", 25.0, 0.0, True),  # clocks went back an hour
    ]


def test_beyond_the_horizon_is_refused_with_the_last_usable_date(trained) -> None:
    with pytest.raises(DataError, match="use an end_date on or before 2018-08-04"):
        _forecast(trained, end_date=date(2018, 8, 10))


def test_too_long_or_reversed_ranges_are_refused(trained) -> None:
    with pytest.raises(DataError, match="too long"):
        _forecast(trained, start_date=date(2016, 1, 1), end_date=date(2018, 8, 3))
    with pytest.raises(DataError, match="on or after start_date"):
        _forecast(trained, start_date=date(2018, 8, 3), end_date=date(2018, 8, 1))


def test_no_model_is_404_unless_the_baseline_is_asked_for(trained) -> None:
    history = trained[0]
    other = FrameHistory({("other", "electricity"): history.frames[METER]})

    with pytest.raises(ModelNotFoundError, match="No trained model for meter 'other'"):
        _forecast(trained, meter=("other", "electricity"), history=other)
    table = _forecast(trained, meter=("other", "electricity"), history=other, use_fallback=True)

    assert table.model_kind == "seasonal_naive" and table.model_version is None
    forecasts = [row for row in table.rows if row["type"] == "forecast"]
    measured = history.frames[METER]["value"]
    first = pd.Timestamp(forecasts[0]["datetime"])
    assert forecasts[0]["value"] == measured[first - pd.Timedelta(days=7)]


def test_cache_loads_a_version_once_and_reloads_when_another_becomes_active(
    trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = trained[2]
    meter_type, meter_id = reversed(METER)
    loaded: list[str] = []
    real_load = serving.load_forecaster

    def counting_load(path: Path, metadata: dict[str, object]) -> object:
        loaded.append(path.name)
        return real_load(path, metadata)

    monkeypatch.setattr(serving, "load_forecaster", counting_load)
    cache = ForecasterCache()
    active = registry.active_version(meter_type, meter_id)
    successor = active.path.parent / "29991231T235959Z-c0ffee"
    shutil.copytree(active.path, successor)
    try:
        first = cache.active(registry, meter_type, meter_id)
        again = cache.active(registry, meter_type, meter_id)
        registry.activate(meter_type, meter_id, successor.name)
        promoted = cache.active(registry, meter_type, meter_id)
        promoted_again = cache.active(registry, meter_type, meter_id)
    finally:
        registry.activate(meter_type, meter_id, active.version)
        shutil.rmtree(successor)

    assert loaded == [active.version, successor.name], "one load per version that became active"
    assert first[1] is again[1] and promoted[1] is promoted_again[1]
    assert first[0] == active.version and promoted[0] == successor.name
    assert promoted[1] is not first[1]


def test_trained_but_never_promoted_says_so_instead_of_asking_to_train(trained) -> None:
    history, _, registry = trained
    active = registry.active_version(*reversed(METER))
    unpromoted = ("unpromoted", "electricity")
    shutil.copytree(active.path, registry.meter_dir("electricity", "unpromoted") / active.version)
    other = FrameHistory({unpromoted: history.frames[METER]})

    with pytest.raises(ModelNotFoundError) as refused:
        _forecast(trained, meter=unpromoted, history=other)

    message = str(refused.value)
    assert "No active model for meter 'unpromoted'" in message
    assert "its 1 trained version did not beat the weekly seasonal naive" in message
    assert '"fallback": "seasonal_naive"' in message and "Train one" not in message
