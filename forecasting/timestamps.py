"""Turn source time stamps into instants on a regular UTC grid.

Meters and exports disagree about time: some write local wall-clock stamps (with a repeated hour in
autumn and a missing one in spring), some label an interval by its end, and loggers jitter by a few
seconds. Everything downstream works on interval *starts* in UTC on a grid of one resolution, so
this module is the single place where those conventions are undone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting.errors import DataError

# Grid steps a meter plausibly reports at: the divisors of a day that are used in practice.
SANE_RESOLUTION_MINUTES = (
    1,
    2,
    5,
    10,
    15,
    20,
    30,
    60,
    120,
    180,
    240,
    360,
    480,
    720,
    1440,
)
DEFAULT_RESOLUTION = pd.Timedelta(minutes=60)
# Spacings shorter than this are duplicate writes or jitter, not the reporting interval.
_MIN_SPACING = pd.Timedelta(seconds=30)
_NS_PER_MINUTE = 60 * 1_000_000_000


class InvalidTimestampError(DataError):
    """Source stamps that cannot be read or do not exist in the stated time zone."""

    def __init__(self, problem: str, examples: list[str]) -> None:
        super().__init__(f"Invalid timestamps: {problem} (e.g. {', '.join(examples[:3])}).")
        self.problem, self.examples = problem, examples


def parse_local_timestamps(
    stamps: pd.Series,
    *,
    timezone: str,
    hour_ending: bool,
    stamp_format: str = "ISO8601",
) -> pd.DatetimeIndex:
    """Convert naive local wall-clock stamps into UTC interval starts, keeping the input order.

    Args:
        stamps: Stamp strings, e.g. ``2015-11-01T02:00:00``, in file order.
        timezone: IANA zone the stamps were written in, e.g. ``America/New_York``.
        hour_ending: The stamp labels the end of an hourly interval (PJM "HE"); the start is
            ``stamp - 1 h``, taken on the naive wall clock *before* localising, so the repeated
            autumn hour-ending 02:00 maps to two different instants.
        stamp_format: ``pandas.to_datetime`` format of the strings.

    A wall-clock time that occurs twice (autumn fall-back) is read by order: the first occurrence
    is daylight-saving time, every later one standard time. A wall-clock time that does not exist
    (spring-forward) is an error, because it cannot be placed honestly; the missing hour itself
    simply has no row, and none is invented. Stamps that already carry an offset are converted.

    Raises:
        InvalidTimestampError: A stamp is empty, unparseable or falls into a spring-forward hole.
    """
    try:
        parsed = pd.DatetimeIndex(pd.to_datetime(stamps, format=stamp_format))
    except (ValueError, TypeError) as error:
        raise InvalidTimestampError(f"cannot parse with format {stamp_format!r}", [str(error)]) from error
    if parsed.hasnans:
        raise InvalidTimestampError("empty stamps", [f"row {i}" for i in np.flatnonzero(parsed.isna())])
    if hour_ending:
        parsed = parsed - pd.Timedelta(hours=1)
    if parsed.tz is not None:
        return parsed.tz_convert("UTC")
    # True marks daylight-saving time for ambiguous stamps; pandas ignores it for all others.
    first_occurrence = ~parsed.duplicated(keep="first")
    try:
        local = parsed.tz_localize(timezone, ambiguous=first_occurrence, nonexistent="raise")
    except Exception as error:  # pytz/zoneinfo raise NonExistentTimeError or ZoneInfoNotFoundError
        raise InvalidTimestampError(f"not a valid time in {timezone}", [str(error)]) from error
    return local.tz_convert("UTC")


def as_utc(index: pd.Index) -> pd.DatetimeIndex:
    """The index as nanosecond UTC instants; a naive index is taken to be UTC already."""
    stamps = pd.DatetimeIndex(index)
    stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
    return stamps.as_unit("ns")


def infer_resolution(stamps: pd.DatetimeIndex) -> pd.Timedelta:
    """The meter's reporting interval: the most common spacing, each snapped to the nearest sane step.

    Spacings under 30 s (duplicate writes) are ignored; "nearest" is by ratio, so 50 min counts as
    60 min and 20 min stays 20 min. The mode, not the median, decides because a patchy meter can
    have more steps that span gaps than regular ones; ties go to the finer step. Fewer than two
    distinct stamps give 1 h.
    """
    spacing = np.diff(np.unique(stamps.asi8))
    spacing = spacing[spacing >= _MIN_SPACING.value]
    if spacing.size == 0:
        return DEFAULT_RESOLUTION
    candidates = np.asarray(SANE_RESOLUTION_MINUTES, dtype=float)
    distance = np.abs(np.log(spacing[:, None] / _NS_PER_MINUTE / candidates[None, :]))
    votes = np.bincount(distance.argmin(axis=1), minlength=candidates.size)
    return pd.Timedelta(minutes=int(candidates[votes.argmax()]))


def infer_grid_phase(stamps: pd.DatetimeIndex, resolution: pd.Timedelta) -> pd.Timedelta:
    """Where the grid sits within one resolution step, e.g. 30 min for hourly readings at :30.

    The most common whole-minute offset from the epoch-aligned grid wins, so seconds of jitter
    and a few odd stamps do not move it. Usually zero.
    """
    step_minutes = int(resolution / pd.Timedelta(minutes=1))
    if stamps.empty or step_minutes <= 1:
        return pd.Timedelta(0)
    offsets = np.rint(stamps.asi8 / _NS_PER_MINUTE).astype(np.int64) % step_minutes
    return pd.Timedelta(minutes=int(np.bincount(offsets).argmax()))


def snap_to_grid(stamps: pd.DatetimeIndex, resolution: pd.Timedelta, phase: pd.Timedelta) -> pd.DatetimeIndex:
    """Move every stamp to the nearest grid point ``phase + k * resolution`` (halves round up)."""
    step, shift = resolution.value, phase.value
    snapped = (stamps.asi8 - shift + step // 2) // step * step + shift
    return pd.DatetimeIndex(snapped.astype("datetime64[ns]")).tz_localize("UTC")
