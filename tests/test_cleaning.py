"""Each cleaning rule, written down as its answer on a small hand-made series, plus the real samples."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from config.settings import PROJECT_ROOT, CleaningSettings
from forecasting.cleaning import DUPLICATE_RULE, CleanedHistory, DataQualityReport, clean_history

METERS = PROJECT_ROOT / "data" / "meters"
HOUR = pd.Timedelta(hours=1)
START = pd.Timestamp("2024-07-01", tz="UTC")


def _readings(values: list[float], *, start: pd.Timestamp = START, step: pd.Timedelta = HOUR) -> pd.DataFrame:
    index = pd.date_range(start, periods=len(values), freq=step)
    return pd.DataFrame({"value": np.asarray(values, dtype=float)}, index=index)


def _clean(raw: pd.DataFrame, meter_type: str = "electricity", **settings: object) -> CleanedHistory:
    return clean_history(raw, meter_type=meter_type, settings=CleaningSettings(**settings))


def _register(values: list[float], **settings: object) -> CleanedHistory:
    return _clean(_readings(values), "heat", cumulative_meter_types=["heat"], **settings)


def _values(cleaned: CleanedHistory) -> list[float | None]:
    return [None if np.isnan(v) else round(v, 6) for v in cleaned.frame["value"]]


# --- time: grid, jitter, duplicates ---------------------------------------------------------------


def test_jittered_stamps_are_snapped_onto_the_hour():
    raw = pd.DataFrame(
        {"value": [1.0, 2.0, 3.0]},
        index=pd.DatetimeIndex(
            ["2024-07-01 10:00:03", "2024-07-01 10:59:58", "2024-07-01 12:00:00"], tz="UTC"
        ),
    )

    cleaned = _clean(raw)

    assert list(cleaned.frame.index) == list(pd.date_range("2024-07-01 10:00", periods=3, freq="h", tz="UTC"))
    assert _values(cleaned) == [1.0, 2.0, 3.0]
    assert cleaned.report.snapped_timestamps == 2


def test_duplicate_write_one_second_apart__last_write_wins_and_is_counted_once():
    raw = _readings([1.0, 5.0, 3.0])
    late_write = pd.DataFrame(
        {"value": [7.0]}, index=pd.DatetimeIndex([START + HOUR + pd.Timedelta(seconds=1)])
    )
    raw = pd.concat([raw, late_write])

    cleaned = _clean(raw)

    assert _values(cleaned) == [1.0, 7.0, 3.0]
    assert cleaned.report.duplicate_timestamps == 1
    assert cleaned.report.snapped_timestamps == 1
    assert cleaned.report.duplicate_rule == DUPLICATE_RULE


def test_exact_duplicate_stamps__last_in_input_order_wins_and_input_may_be_unsorted():
    index = pd.DatetimeIndex([START + HOUR, START, START + HOUR, START + 2 * HOUR])
    raw = pd.DataFrame({"value": [4.0, 1.0, 6.0, 3.0]}, index=index)

    cleaned = _clean(raw)

    assert _values(cleaned) == [1.0, 6.0, 3.0]
    assert cleaned.report.duplicate_timestamps == 1


def test_naive_index_is_taken_as_utc_and_temperature_is_carried():
    raw = _readings([1.0, 2.0, 3.0]).tz_localize(None)
    raw["temperature"] = [10.0, 11.0, 12.0]

    cleaned = _clean(raw)

    assert str(cleaned.frame.index.tz) == "UTC"
    assert cleaned.frame.index[0] == START
    assert cleaned.frame["temperature"].tolist() == [10.0, 11.0, 12.0]


def test_implausible_temperatures_are_left_out_and_reported():
    raw = _readings([1.0] * 8)
    raw["temperature"] = [10.0, 1e308, 11.0, float("inf"), -273.0, 12.0, 13.0, 14.0]

    cleaned = _clean(raw)

    # 1e308 and -273 are emptied; the short gaps they leave are interpolated like any other.
    expected = [10.0, 10.5, 11.0, 11 + 1 / 3, 11 + 2 / 3, 12.0, 13.0, 14.0]
    assert cleaned.frame["temperature"].tolist() == pytest.approx(expected)
    assert any(
        "3 temperature readings outside -100 .. 400 were left out" in note for note in cleaned.report.notes
    )


@pytest.mark.parametrize("minutes", [15, 30])
def test_sub_hourly_resolution_is_detected(minutes):
    step = pd.Timedelta(minutes=minutes)

    cleaned = _clean(_readings([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], step=step))

    assert cleaned.resolution == step
    assert cleaned.report.resolution_minutes == minutes
    assert cleaned.frame.index.freq == step


# --- gaps -----------------------------------------------------------------------------------------


def test_short_gap_is_interpolated_and_listed_as_filled():
    raw = _readings([1.0, 2.0, 3.0, 4.0, 5.0]).drop(index=[START + HOUR, START + 2 * HOUR])

    cleaned = _clean(raw, max_fill_gap_intervals=2)

    assert _values(cleaned) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert cleaned.report.filled_gap_intervals == 2
    assert [(g.start, g.end, g.intervals, g.filled) for g in cleaned.report.gaps] == [
        (START + HOUR, START + 3 * HOUR, 2, True)
    ]


def test_long_gap_is_listed_and_left_empty():
    raw = _readings([1.0] * 10).drop(index=pd.date_range(START + HOUR, periods=4, freq="h"))

    cleaned = _clean(raw, max_fill_gap_intervals=3)

    assert _values(cleaned) == [1.0, None, None, None, None, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert cleaned.report.filled_gap_intervals == 0
    assert [(g.start, g.intervals, g.filled) for g in cleaned.report.gaps] == [(START + HOUR, 4, False)]
    assert cleaned.report.usable_points == 6


# --- sign and cap ---------------------------------------------------------------------------------


def test_negative_gas_is_excluded_not_interpolated():
    cleaned = _clean(_readings([2.0, -1.0, 4.0]), "gas")

    assert _values(cleaned) == [2.0, None, 4.0]
    assert cleaned.report.negative_values_removed == 1
    assert cleaned.report.gaps == []


def test_negative_electricity_is_kept_as_net_load():
    cleaned = _clean(_readings([2.0, -1.0, 4.0]), "electricity")

    assert _values(cleaned) == [2.0, -1.0, 4.0]
    assert cleaned.report.negative_values_removed == 0


def test_values_above_the_configured_cap_are_excluded():
    cleaned = _clean(_readings([2.0, 500.0, 4.0]), "water", max_interval_value=100.0)

    assert _values(cleaned) == [2.0, None, 4.0]
    assert cleaned.report.above_cap_removed == 1


def test_without_a_cap_only_spikes_far_above_the_999th_percentile_are_excluded():
    values = [10.0 + (i % 24) for i in range(2000)]
    values[1000] = 10_000.0  # a glitch: far above 10 x the 99.9th percentile (about 33)
    values[1500] = 300.0  # ten times the usual peak, still under the cap

    cleaned = _clean(_readings(values), "water")

    assert np.isnan(cleaned.frame["value"].iloc[1000])
    assert cleaned.frame["value"].iloc[1500] == 300.0
    assert cleaned.report.above_cap_removed == 1


# --- registers ------------------------------------------------------------------------------------


def test_register_is_differenced_into_consumption_labelled_by_interval_start():
    cleaned = _register([100.0, 101.5, 104.0, 104.0])

    assert list(cleaned.frame.index) == list(pd.date_range(START, periods=3, freq="h"))
    assert _values(cleaned) == [1.5, 2.5, 0.0]
    assert cleaned.report.cumulative


def test_register_reset_to_zero__delta_is_the_new_reading():
    cleaned = _register([5000.0, 5010.0, 5020.0, 2.0, 12.0])

    assert _values(cleaned) == [10.0, 10.0, 2.0, 10.0]
    assert cleaned.report.counter_resets == 1


def test_register_yearly_rollover__delta_is_the_new_reading():
    cleaned = _register([99990.0, 99995.0, 99999.0, 3.0, 8.0])

    assert _values(cleaned) == [5.0, 4.0, 3.0, 5.0]
    assert cleaned.report.counter_resets == 1


def test_register_tiny_backward_step_is_jitter_with_zero_delta():
    cleaned = _register([100.0, 110.0, 109.9, 120.0, 130.0])

    assert _values(cleaned) == [10.0, 0.0, 10.1, 10.0]
    assert cleaned.report.backward_jitter_steps == 1
    assert cleaned.report.counter_resets == 0


def test_register_impossible_deltas_are_excluded():
    # A jump above the cap, then a drop that is neither a reset nor jitter.
    cleaned = _register([100.0, 110.0, 5000.0, 5010.0, 3000.0, 3010.0], max_interval_value=50.0)

    assert _values(cleaned) == [10.0, None, 10.0, None, 10.0]
    assert cleaned.report.impossible_deltas == 2


def test_register_short_gap_spreads_the_delta_and_long_gap_stays_empty():
    raw = _readings([100.0, 110.0, 999.0, 130.0, 140.0, 0, 0, 0, 0, 0, 190.0, 200.0])
    raw = raw.drop(index=[START + 2 * HOUR, *pd.date_range(START + 5 * HOUR, periods=5, freq="h")])

    cleaned = clean_history(
        raw,
        meter_type="heat",
        settings=CleaningSettings(cumulative_meter_types=["heat"], max_fill_gap_intervals=1),
    )

    assert _values(cleaned) == [10.0, 10.0, 10.0, 10.0, None, None, None, None, None, None, 10.0]
    assert [(g.start, g.intervals, g.filled) for g in cleaned.report.gaps] == [
        (START + HOUR, 2, True),
        (START + 4 * HOUR, 6, False),
    ]
    assert cleaned.report.filled_gap_intervals == 2


def test_unconfigured_register_is_detected_by_shape():
    rng = np.random.default_rng(1)
    register = 2000.0 + np.cumsum(rng.uniform(0.0, 3.0, size=200))

    cleaned = _clean(_readings(register.tolist()), "heat")

    assert cleaned.report.cumulative
    assert cleaned.frame["value"].between(0.0, 3.0).all()


@pytest.mark.parametrize(
    "values",
    [
        [0.0] * 150 + [4.0, 0.0] + [0.0] * 50,  # summer gas: zeros with one burst, rarely falls
        [7.0] * 200,  # constant
        [10.0 + (i % 24) for i in range(200)],  # a daily shape
    ],
)
def test_consumption_shapes_are_not_taken_for_registers(values):
    assert not _clean(_readings(values), "gas").report.cumulative


def test_danish_heat_register_sample_gives_hourly_deltas():
    raw = pd.read_csv(METERS / "heat__dk_660_register.csv", index_col="timestamp", parse_dates=True)

    cleaned = _clean(raw, "heat")
    consumption = cleaned.frame["value"]

    assert cleaned.report.cumulative
    assert len(consumption) == len(raw) - 1
    assert consumption.notna().all()
    assert consumption.min() >= 0.0
    assert consumption.max() == pytest.approx(9.05, abs=0.01)
    assert consumption.sum() == pytest.approx(raw["value"].iloc[-1] - raw["value"].iloc[0])


@pytest.mark.parametrize("zone", ["comed", "ekpc"])
def test_pjm_load_comes_through_unchanged(zone):
    raw = pd.read_csv(METERS / f"electricity__pjm_{zone}.csv", index_col="timestamp", parse_dates=True)

    cleaned = _clean(raw, "electricity")
    report = cleaned.report

    pd.testing.assert_series_equal(
        cleaned.frame["value"], raw["value"], check_freq=False, check_names=False, check_dtype=False
    )
    assert (report.gaps, report.flat_runs, report.cumulative) == ([], [], False)
    assert report.snapped_timestamps == report.duplicate_timestamps == report.filled_gap_intervals == 0
    assert report.negative_values_removed == report.above_cap_removed == 0


# --- flat runs ------------------------------------------------------------------------------------


def test_301_hour_summer_zero_run_in_gas_is_seasonal_reported_and_kept():
    raw = _readings(
        [float(i % 5 + 1) for i in range(24)] + [0.0] * 301 + [float(i % 3 + 1) for i in range(24)]
    )

    cleaned = _clean(raw, "gas")

    (run,) = cleaned.report.flat_runs
    assert (run.start, run.intervals, run.value, run.seasonal_zero) == (START + 24 * HOUR, 301, 0.0, True)
    assert run.end == run.start + 301 * HOUR
    assert (cleaned.frame["value"] == 0.0).sum() == 301
    assert cleaned.report.usable_points == len(raw)


def test_long_flat_run_in_electricity_is_reported_as_possibly_stuck_not_removed():
    cleaned = _clean(_readings([5.0] * 10 + [42.0] * 30 + [6.0] * 10), "electricity", flat_run_hours=24)

    (run,) = cleaned.report.flat_runs
    assert (run.intervals, run.value, run.seasonal_zero) == (30, 42.0, False)
    assert cleaned.frame["value"].notna().all()
    assert any("stuck meter" in note for note in cleaned.report.notes)


def test_flat_run_shorter_than_the_threshold_is_not_reported():
    assert _clean(_readings([1.0] + [0.0] * 23 + [1.0]), "gas", flat_run_hours=24).report.flat_runs == []


# --- report and edges -----------------------------------------------------------------------------


def test_report_round_trips_through_json():
    cleaned = _clean(
        _readings([1.0, 2.0]).drop(index=[START]).pipe(lambda r: pd.concat([r, _readings([1.0] * 3)]))
    )

    report = DataQualityReport.model_validate_json(cleaned.report.model_dump_json())

    assert report == cleaned.report
    assert report.raw_points == 4
    assert report.first_timestamp == START


def test_empty_history_gives_an_empty_frame_and_report():
    raw = pd.DataFrame({"value": []}, index=pd.DatetimeIndex([], tz="UTC"))

    cleaned = _clean(raw)

    assert cleaned.frame.empty
    assert (cleaned.report.raw_points, cleaned.report.usable_points, cleaned.report.first_timestamp) == (
        0,
        0,
        None,
    )


def test_three_years_hourly_with_faults_cleans_well_under_a_second():
    rng = np.random.default_rng(7)
    index = pd.date_range("2021-01-01", periods=26_280, freq="h", tz="UTC")
    jitter = pd.to_timedelta(rng.integers(-5, 6, size=len(index)), unit="s")
    raw = pd.DataFrame({"value": rng.uniform(0, 10, len(index)), "temperature": 10.0}, index=index + jitter)
    raw = raw.drop(raw.index[rng.choice(len(raw), 500, replace=False)]).sample(frac=1.0, random_state=7)

    started = time.perf_counter()
    cleaned = _clean(raw, "gas")
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert len(cleaned.frame) == pytest.approx(26_280, abs=2)
