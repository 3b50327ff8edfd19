"""Settings of the energy forecasting service (see :mod:`config.settings`)."""

from config.settings import (
    CleaningSettings,
    InfluxSettings,
    Settings,
    TrainingSettings,
    WorkerSettings,
    get_settings,
)

__all__ = [
    "CleaningSettings",
    "InfluxSettings",
    "Settings",
    "TrainingSettings",
    "WorkerSettings",
    "get_settings",
]
