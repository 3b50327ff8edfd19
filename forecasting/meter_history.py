"""Where meter readings come from: one interface, one implementation per store.

A reader returns raw readings, unchanged and in UTC; cleaning is :mod:`forecasting.cleaning`'s job.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from config.settings import InfluxSettings

if TYPE_CHECKING:  # pandas costs the API ~0.6 s of start-up; only readers need it at run time
    import pandas as pd

VALUE_COLUMN = "value"
TEMPERATURE_COLUMN = "temperature"


class MeterHistory(Protocol):
    """Reads one meter's readings."""

    def fetch(
        self,
        meter_id: str,
        meter_type: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """All readings in ``[start, end)`` (whole history when ``None``).

        Returns a frame indexed by a sorted, tz-aware UTC ``DatetimeIndex`` with a float column
        ``value`` and, when the store has it, ``temperature``. An unknown meter gives an empty frame.
        Raises ``SourceUnavailableError`` when the store cannot be reached.
        """
        ...

    def ping(self) -> None:
        """Raise ``SourceUnavailableError`` unless the store answers."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_meter_history(settings: InfluxSettings) -> MeterHistory:
    """The reader for the configured InfluxDB version."""
    if settings.version == 2:
        from forecasting.influx_flux import FluxMeterHistory

        return FluxMeterHistory(settings)
    from forecasting.influx_influxql import InfluxQLMeterHistory

    return InfluxQLMeterHistory(settings)
