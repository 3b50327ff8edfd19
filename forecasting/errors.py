"""Typed failures of the forecasting domain.

Each error carries the data that explains it and the failure class the service reports
(``error_type``), so the boundary (API handler, task actor) classifies it once without parsing
messages. ``retryable`` says whether running the same job again could succeed.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    """Failure classes reported in a job's status."""

    DATA = "DATA"
    CONNECTION = "CONNECTION"
    MODEL = "MODEL"
    TIMEOUT = "TIMEOUT"
    INTERNAL = "INTERNAL"


class ForecastingError(Exception):
    """Base class for expected failures; the message is safe to show a user."""

    error_type: ErrorType = ErrorType.INTERNAL
    retryable: bool = False


class DataError(ForecastingError):
    """The meter's data cannot produce a model; retrying will not help."""

    error_type = ErrorType.DATA


class NoHistoryError(DataError):
    def __init__(self, meter_id: str, meter_type: str) -> None:
        super().__init__(
            f"No readings found for meter '{meter_id}' of type '{meter_type}'. "
            "Check the meter id and type, or import its history first."
        )
        self.meter_id, self.meter_type = meter_id, meter_type


class InsufficientHistoryError(DataError):
    def __init__(self, meter_id: str, *, found: str, needed: str) -> None:
        super().__init__(f"Not enough usable history for meter '{meter_id}': found {found}; need {needed}.")
        self.meter_id, self.found, self.needed = meter_id, found, needed


class SourceUnavailableError(ForecastingError):
    """The meter data store could not be reached or answered with an error."""

    error_type = ErrorType.CONNECTION
    retryable = True


class SourceQueryError(ForecastingError):
    """The data store rejected the query (bad database, schema, credentials); retrying won't help."""

    error_type = ErrorType.CONNECTION


class ModelError(ForecastingError):
    """Training or loading a model failed."""

    error_type = ErrorType.MODEL


class ModelNotFoundError(ModelError):
    def __init__(self, meter_type: str, meter_id: str, *, inactive_versions: int = 0) -> None:
        if inactive_versions:
            # Trained, but the promotion gate kept every version out: retraining alone rarely helps.
            plural = "s" if inactive_versions > 1 else ""
            message = (
                f"No active model for meter '{meter_id}' of type '{meter_type}': its {inactive_versions} "
                f"trained version{plural} did not beat the weekly seasonal naive on the backtest "
                f"(GET /models/{meter_type}/{meter_id} says why). "
                'Ask with "fallback": "seasonal_naive" to get that baseline.'
            )
        else:
            message = (
                f"No trained model for meter '{meter_id}' of type '{meter_type}'. "
                "Train one with POST /trainmodel/ first."
            )
        super().__init__(message)
        self.meter_type, self.meter_id = meter_type, meter_id
        self.inactive_versions = inactive_versions


class InvalidMeterKeyError(DataError):
    """A meter id or type that the service refuses to use in a path or a query."""


class InvalidForecastRangeError(DataError):
    """A forecast request's dates that no data can answer: reversed, too long, out of range."""


class TrainingCancelledError(ForecastingError):
    """The job was cancelled by a user; raised from progress callbacks to stop training."""
