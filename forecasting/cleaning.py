"""Turn raw meter readings into a regular consumption series, and say what was done to them.

Models are only as good as the history they see, and real meters lie in familiar ways: running
totals instead of consumption, counter resets, duplicate writes, jittered stamps, gaps, spikes,
stuck values. Each rule below is deliberately simple and every decision is counted in a
:class:`DataQualityReport`, so a user can see why a forecast looks the way it does.

Rules (each has a test on a hand-made series in ``tests/test_cleaning.py``):

* Time: UTC, interval *start* labels, one grid at the inferred resolution (:mod:`forecasting.timestamps`).
  Stamps are snapped to the nearest grid point; readings landing on the same point are resolved by
  *last write wins* (latest raw stamp, then input order), per column, so nothing is double-counted.
* Registers: configured types, or detected (:func:`looks_cumulative`), are differenced. A drop to
  at most ``RESET_FRACTION`` of the previous reading is a reset/rollover (the delta is the new
  reading); a backward step no larger than a typical forward step is jitter (delta 0); any other
  drop, and any per-interval delta above the cap, is impossible (NaN). A delta across missing
  readings is spread evenly (linear interpolation of the register) when the gap is short.
* Consumption series: negative values are excluded unless the type exports (net load); values
  above the cap are excluded; short gaps are interpolated, long ones stay NaN and are listed.
  Excluded values stay NaN: they are not gaps and are never interpolated.
* Cap: ``settings.max_interval_value`` or, unset, ``AUTO_CAP_FACTOR`` times the 99.9th percentile
  of the positive values, far above any real peak.
* Flat runs of identical values lasting ``settings.flat_run_hours`` are reported, never removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel

from config.settings import CleaningSettings
from forecasting.meter_history import TEMPERATURE_COLUMN, VALUE_COLUMN
from forecasting.timestamps import (
    DEFAULT_RESOLUTION,
    as_utc,
    infer_grid_phase,
    infer_resolution,
    snap_to_grid,
)

DUPLICATE_RULE = (
    "last write wins: of the readings that land on one grid point, the latest stamp is kept "
    "(input order breaks ties), column by column, ignoring empty values"
)
# Zero runs in these types are heating/cooling switched off for the season, not a dead meter.
SEASONAL_METER_TYPES = frozenset({"gas", "heat", "hotwater", "steam", "chilledwater"})
RESET_FRACTION = 0.1
AUTO_CAP_FACTOR = 10.0
AUTO_CAP_QUANTILE = 0.999
# Register detection: enough steps to rule out a short monotone stretch of real consumption.
DETECT_MIN_STEPS = 48
DETECT_NONDECREASING_SHARE = 0.99
DETECT_LEVEL_TO_STEP = 10.0
MAX_LISTED = 500

_Item = TypeVar("_Item")


class GapInfo(BaseModel):
    """Intervals of the cleaned series without an observation; ``end`` is exclusive."""

    start: datetime
    end: datetime
    intervals: int
    filled: bool


class FlatRun(BaseModel):
    """A run of identical consecutive values; ``end`` is exclusive."""

    start: datetime
    end: datetime
    intervals: int
    value: float
    seasonal_zero: bool


class DataQualityReport(BaseModel):
    """What cleaning found and changed; stored with task results and model metadata."""

    raw_points: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    resolution_minutes: int
    cumulative: bool
    snapped_timestamps: int
    duplicate_timestamps: int
    duplicate_rule: str = DUPLICATE_RULE
    counter_resets: int = 0
    backward_jitter_steps: int = 0
    impossible_deltas: int = 0
    negative_values_removed: int = 0
    above_cap_removed: int = 0
    filled_gap_intervals: int = 0
    gaps: list[GapInfo] = []
    flat_runs: list[FlatRun] = []
    usable_points: int = 0
    usable_days: float = 0.0
    notes: list[str] = []


@dataclass(frozen=True)
class CleanedHistory:
    """A regular UTC consumption series (``value``, maybe ``temperature``) and its report."""

    frame: pd.DataFrame
    resolution: pd.Timedelta
    report: DataQualityReport


@dataclass
class _Consumption:
    """Per-interval values on the grid plus what producing them counted."""

    values: pd.Series
    gaps: list[GapInfo]
    counts: dict[str, int]


def clean_history(raw: pd.DataFrame, *, meter_type: str, settings: CleaningSettings) -> CleanedHistory:
    """Clean one meter's raw readings (as a ``MeterHistory`` returns them) into a regular series.

    The result spans the first to the last usable interval; ``value`` is consumption per interval
    (NaN where a gap was too long to fill or a value was excluded).
    """
    meter_type = meter_type.lower()
    columns = [VALUE_COLUMN] + ([TEMPERATURE_COLUMN] if TEMPERATURE_COLUMN in raw.columns else [])
    readings = raw.reindex(columns=columns).astype(float).set_axis(as_utc(raw.index)).dropna(how="all")
    notes: list[str] = []
    if len(readings) < len(raw):
        notes.append(f"{len(raw) - len(readings)} readings without any value were ignored.")
    resolution = infer_resolution(readings.index) if len(readings) else DEFAULT_RESOLUTION
    phase = infer_grid_phase(readings.index, resolution)
    if phase:
        notes.append(f"Readings sit {phase} past the round {resolution} grid; the grid follows them.")
    first_last = (readings.index.min(), readings.index.max()) if len(readings) else (None, None)
    grid = snap_to_grid(readings.index, resolution, phase)
    snapped = int((grid != readings.index).sum())
    readings = readings.set_axis(grid).sort_index(kind="stable")
    merged = readings.groupby(level=0).last()
    observed = merged[VALUE_COLUMN].dropna()
    notes.extend(_spacing_notes(observed.index, resolution))

    cumulative = meter_type in _lower(settings.cumulative_meter_types)
    if cumulative:
        notes.append(f"Treated as a register because '{meter_type}' is a configured cumulative type.")
    elif looks_cumulative(observed):
        cumulative = True
        notes.append(
            f"Detected as a register: values never fall in >= {DETECT_NONDECREASING_SHARE:.0%} of steps "
            f"and sit far above their step size; differenced into consumption per interval."
        )
    if cumulative:
        consumption = _register_consumption(observed, resolution, settings, notes)
    else:
        exports = meter_type in _lower(settings.export_meter_types)
        consumption = _direct_consumption(observed, resolution, settings, exports, notes)

    frame = consumption.values.to_frame(VALUE_COLUMN)
    if TEMPERATURE_COLUMN in merged.columns:
        temperature = _plausible_temperature(merged[TEMPERATURE_COLUMN].reindex(frame.index), notes)
        frame[TEMPERATURE_COLUMN] = temperature.interpolate(
            limit=settings.max_fill_gap_intervals, limit_area="inside"
        )
    flat_runs = find_flat_runs(frame[VALUE_COLUMN], resolution, settings.flat_run_hours, meter_type)
    notes.extend(_flat_run_notes(flat_runs))
    usable = int(frame[VALUE_COLUMN].notna().sum())
    report = DataQualityReport(
        raw_points=len(raw),
        first_timestamp=first_last[0],
        last_timestamp=first_last[1],
        resolution_minutes=int(resolution / pd.Timedelta(minutes=1)),
        cumulative=cumulative,
        snapped_timestamps=snapped,
        duplicate_timestamps=len(readings) - len(merged),
        filled_gap_intervals=sum(gap.intervals for gap in consumption.gaps if gap.filled),
        gaps=_limited(consumption.gaps, "gaps", notes),
        flat_runs=_limited(flat_runs, "flat runs", notes),
        usable_points=usable,
        usable_days=round(usable * (resolution / pd.Timedelta(days=1)), 3),
        notes=notes,
        **consumption.counts,
    )
    return CleanedHistory(frame=frame, resolution=resolution, report=report)


def looks_cumulative(observed: pd.Series) -> bool:
    """Whether a series is a running total rather than consumption.

    Three tests, all needed: at least ``DETECT_MIN_STEPS`` steps between readings; at least
    ``DETECT_NONDECREASING_SHARE`` of them do not fall (resets and jitter fit in the rest); and
    the median level is ``DETECT_LEVEL_TO_STEP`` times the median rise. The last test rejects a
    constant series and mostly-zero consumption with rare bursts (summer gas), which also rarely
    fall but return to zero instead of building up a total.
    """
    values = observed.to_numpy(dtype=float)
    steps = np.diff(values)
    if steps.size < DETECT_MIN_STEPS or np.mean(steps >= 0) < DETECT_NONDECREASING_SHARE:
        return False
    rises = steps[steps > 0]
    return bool(rises.size) and bool(np.median(values) >= DETECT_LEVEL_TO_STEP * np.median(rises))


#: Outside these no thermometer reads, in °C, °F or K alike: a sensor fault or a unit mix-up.
TEMPERATURE_RANGE = (-100.0, 400.0)


def _plausible_temperature(temperature: pd.Series, notes: list[str]) -> pd.Series:
    """``temperature`` with values outside ``TEMPERATURE_RANGE`` (and infinities) emptied, and a note."""
    numeric = pd.to_numeric(temperature, errors="coerce").astype(float)
    low, high = TEMPERATURE_RANGE
    implausible = numeric.notna() & ~numeric.between(low, high)
    if implausible.any():
        notes.append(
            f"{int(implausible.sum())} temperature readings outside {low:g} .. {high:g} were left out "
            "(a sensor fault or another unit)."
        )
    return numeric.where(~implausible)


def _register_consumption(
    observed: pd.Series, resolution: pd.Timedelta, settings: CleaningSettings, notes: list[str]
) -> _Consumption:
    """Difference a register into consumption per interval, labelled by the interval's start."""
    counts = {"counter_resets": 0, "backward_jitter_steps": 0, "impossible_deltas": 0}
    if len(observed) < 2:
        notes.append("A register needs two readings to give any consumption.")
        return _Consumption(pd.Series(dtype=float, index=pd.DatetimeIndex([], tz="UTC")), [], counts)
    times, values = observed.index.asi8, observed.to_numpy(dtype=float)
    spans = np.diff(times) // resolution.value
    steps = np.diff(values)
    rises = steps[steps > 0]
    jitter_tolerance = float(np.median(rises)) if rises.size else 0.0
    falling = steps < 0
    jitter = falling & (-steps <= jitter_tolerance)
    reset = falling & ~jitter & (values[1:] <= RESET_FRACTION * values[:-1])
    broken = falling & ~jitter & ~reset
    deltas = np.where(jitter, 0.0, np.where(reset, np.maximum(values[1:], 0.0), steps))
    deltas[broken] = np.nan
    per_interval = deltas / spans
    long_gap = spans - 1 > settings.max_fill_gap_intervals
    per_interval[long_gap] = np.nan
    cap = _cap(per_interval, settings, notes)
    too_big = per_interval > cap
    per_interval[too_big] = np.nan
    counts.update(
        counter_resets=int(reset.sum()),
        backward_jitter_steps=int(jitter.sum()),
        impossible_deltas=int(broken.sum() + too_big.sum()),
    )
    if broken.any():
        notes.append(f"{int(broken.sum())} register drops were neither a reset nor jitter; left empty.")
    starts = pd.DatetimeIndex(times[:-1].astype("datetime64[ns]")).tz_localize("UTC")
    gaps = [
        GapInfo(start=start, end=start + resolution * int(span), intervals=int(span), filled=not long)
        for start, span, long in zip(starts[spans > 1], spans[spans > 1], long_gap[spans > 1], strict=True)
    ]
    index = pd.date_range(starts[0], periods=int(spans.sum()), freq=resolution)
    values_out = pd.Series(np.repeat(per_interval, spans), index=index, dtype=float)
    return _Consumption(_trim(values_out), gaps, counts)


def _direct_consumption(
    observed: pd.Series,
    resolution: pd.Timedelta,
    settings: CleaningSettings,
    exports: bool,
    notes: list[str],
) -> _Consumption:
    """Exclude impossible values, put the rest on the grid and fill short gaps."""
    negative = (observed < 0) if not exports else pd.Series(False, index=observed.index)
    cap = _cap(observed.to_numpy(dtype=float), settings, notes)
    magnitude = observed.abs() if exports else observed
    above_cap = (magnitude > cap) & ~negative
    counts = {"negative_values_removed": int(negative.sum()), "above_cap_removed": int(above_cap.sum())}
    usable = observed[~negative & ~above_cap]
    if usable.empty:
        return _Consumption(pd.Series(dtype=float, index=pd.DatetimeIndex([], tz="UTC")), [], counts)
    index = pd.date_range(usable.index[0], usable.index[-1], freq=resolution)
    values = observed.reindex(index)
    missing = values.isna().to_numpy()
    values[values.index.isin(observed.index[negative | above_cap])] = np.nan
    excluded = values.isna().to_numpy() & ~missing
    interpolated = values.interpolate(limit_area="inside")
    gaps: list[GapInfo] = []
    fill = np.zeros(len(values), dtype=bool)
    for start, length in zip(*find_runs(missing), strict=True):
        stop = start + length
        touches_excluded = excluded[max(start - 1, 0) : stop + 1].any()
        filled = length <= settings.max_fill_gap_intervals and not touches_excluded
        fill[start:stop] = filled
        start_time = index[start]
        gaps.append(
            GapInfo(
                start=start_time,
                end=start_time + resolution * int(length),
                intervals=int(length),
                filled=filled,
            )
        )
    return _Consumption(values.where(~fill, interpolated), gaps, counts)


def find_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start positions and lengths of the runs of ``True`` in a boolean array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    return starts, np.flatnonzero(edges == -1) - starts


def find_flat_runs(
    values: pd.Series, resolution: pd.Timedelta, min_hours: int, meter_type: str
) -> list[FlatRun]:
    """Runs of one repeated value lasting at least ``min_hours``; NaN breaks a run.

    A zero run in a seasonal type (:data:`SEASONAL_METER_TYPES`) is flagged ``seasonal_zero``:
    the season, not the meter, explains it. Nothing is removed either way.
    """
    min_intervals = max(2, int(np.ceil(pd.Timedelta(hours=min_hours) / resolution)))
    array = values.to_numpy(dtype=float)
    if array.size < min_intervals:
        return []
    same_as_previous = np.concatenate(([False], array[1:] == array[:-1]))
    # A run is a value plus its repeats, so extend each run of "repeat" flags one step back.
    starts, lengths = find_runs(same_as_previous)
    starts, lengths = starts - 1, lengths + 1
    keep = lengths >= min_intervals
    seasonal = meter_type in SEASONAL_METER_TYPES
    return [
        FlatRun(
            start=values.index[start],
            end=values.index[start] + resolution * int(length),
            intervals=int(length),
            value=float(array[start]),
            seasonal_zero=seasonal and array[start] == 0,
        )
        for start, length in zip(starts[keep], lengths[keep], strict=True)
    ]


def _cap(values: np.ndarray, settings: CleaningSettings, notes: list[str]) -> float:
    """The largest believable value per interval (see the module docstring)."""
    if settings.max_interval_value is not None:
        return settings.max_interval_value
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return float("inf")
    cap = AUTO_CAP_FACTOR * float(np.quantile(positive, AUTO_CAP_QUANTILE))
    notes.append(f"No max_interval_value set; values above {cap:.6g} per interval count as impossible.")
    return cap


def _trim(values: pd.Series) -> pd.Series:
    """Drop leading and trailing empty intervals, so the series starts and ends with data."""
    valid = values.notna().to_numpy()
    if not valid.any():
        return values.iloc[0:0]
    positions = np.flatnonzero(valid)
    return values.iloc[positions[0] : positions[-1] + 1]


def _spacing_notes(stamps: pd.DatetimeIndex, resolution: pd.Timedelta) -> list[str]:
    steps = np.diff(stamps.asi8)
    if steps.size == 0:
        return []
    off_grid = float(np.mean(steps != resolution.value))
    if off_grid <= 0.2:
        return []
    return [f"{off_grid:.0%} of reading steps differ from the {resolution} resolution (irregular meter?)."]


def _flat_run_notes(runs: list[FlatRun]) -> list[str]:
    stuck = [run for run in runs if not run.seasonal_zero]
    notes = []
    if len(stuck) < len(runs):
        notes.append(f"{len(runs) - len(stuck)} seasonal zero runs kept as real consumption.")
    if stuck:
        longest = max(stuck, key=lambda run: run.intervals)
        notes.append(
            f"{len(stuck)} flat runs may be a stuck meter (longest {longest.intervals} intervals of "
            f"{longest.value:g} from {longest.start:%Y-%m-%d %H:%M}Z); reported, not excluded."
        )
    return notes


def _limited(items: list[_Item], what: str, notes: list[str]) -> list[_Item]:
    if len(items) <= MAX_LISTED:
        return items
    notes.append(f"Only the first {MAX_LISTED} of {len(items)} {what} are listed.")
    return items[:MAX_LISTED]


def _lower(names: list[str]) -> set[str]:
    return {name.lower() for name in names}
