"""Which date ranges a forecast request may ask for: one rule for the API's validation and the domain.

Plain ``datetime`` only, so the API can validate requests without importing pandas.
"""

from __future__ import annotations

from datetime import date

from forecasting.errors import InvalidForecastRangeError

MAX_RANGE_DAYS = 366
#: Meter data and forecasts live well inside these; outside them date arithmetic (a lookback of
#: days before ``start_date``, pandas' nanosecond timestamps, which end in 2262) would overflow.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2199, 12, 31)


def check_supported_date(day: date) -> None:
    """Raise ``InvalidForecastRangeError`` for a date outside ``EARLIEST_DATE .. LATEST_DATE``."""
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise InvalidForecastRangeError(
            f"{day.isoformat()} is outside the supported dates "
            f"{EARLIEST_DATE.isoformat()} .. {LATEST_DATE.isoformat()}"
        )


def check_forecast_range(start_date: date, end_date: date) -> None:
    """Raise ``InvalidForecastRangeError`` saying what to change, unless the range can be served."""
    check_supported_date(start_date)
    check_supported_date(end_date)
    if end_date < start_date:
        raise InvalidForecastRangeError("end_date must be on or after start_date")
    if (end_date - start_date).days + 1 > MAX_RANGE_DAYS:
        raise InvalidForecastRangeError(
            f"The date range is too long: at most {MAX_RANGE_DAYS} days per request "
            f"(end_date - start_date + 1 <= {MAX_RANGE_DAYS})"
        )
