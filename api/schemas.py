"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from config import get_settings
from forecasting.errors import InvalidForecastRangeError, InvalidMeterKeyError
from forecasting.forecast_range import check_forecast_range, check_supported_date
from forecasting.meter_key import METER_ID_MAX_LENGTH, check_meter_id, check_meter_type
from service.job_status import JobState


def _valid_meter_id(value: str) -> str:
    try:
        return check_meter_id(value)
    except InvalidMeterKeyError as error:
        raise ValueError(str(error)) from None


def _valid_meter_type(value: str) -> str:
    try:
        return check_meter_type(value, get_settings().meter_types)
    except InvalidMeterKeyError as error:
        raise ValueError(str(error)) from None


MeterId = Annotated[
    str,
    Field(max_length=METER_ID_MAX_LENGTH, examples=["meter_001"]),
    AfterValidator(_valid_meter_id),
]
# No max_length: a long unknown type gets the same answer as a short one, with the list of known
# types (the body limit bounds its size; check_meter_type shows it cut to 40 characters).
MeterType = Annotated[str, Field(examples=["electricity"]), AfterValidator(_valid_meter_type)]

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII only: \d takes full-width digits too


def _iso_date_text(value: Any) -> Any:
    """Only ``YYYY-MM-DD``: pydantic alone would also take epoch seconds and midnight datetimes."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("use a date written YYYY-MM-DD, like 2018-08-02")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is not a day of the calendar; use YYYY-MM-DD, like 2018-08-02") from None


def _supported_date(value: date) -> date:
    try:
        check_supported_date(value)
    except InvalidForecastRangeError as error:
        raise ValueError(str(error)) from None
    return value


IsoDate = Annotated[
    date, BeforeValidator(_iso_date_text), AfterValidator(_supported_date), Field(examples=["2018-08-02"])
]


class TrainRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"meter_id": "pjm_ekpc", "meter_type": "electricity"}]},
    )

    meter_id: MeterId
    meter_type: MeterType


class TaskAccepted(BaseModel):
    task_id: str
    status: JobState
    progress: int
    message: str


class ForecastRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "meter_id": "pjm_ekpc",
                    "meter_type": "electricity",
                    "start_date": "2018-08-02",
                    "end_date": "2018-08-03",
                    "resolution": "hourly",
                }
            ]
        },
    )

    meter_id: MeterId
    meter_type: MeterType
    start_date: IsoDate
    end_date: IsoDate
    resolution: Literal["daily", "hourly"] = "daily"
    fallback: Literal["none", "seasonal_naive"] = "none"

    @field_validator("end_date")
    @classmethod
    def _servable_range(cls, end_date: date, info: ValidationInfo) -> date:
        # A field validator, not a model one: the error then points at end_date (loc), and a
        # start_date that failed on its own is not in info.data, so only that error is reported.
        start_date = info.data.get("start_date")
        try:
            check_forecast_range(start_date or end_date, end_date)
        except InvalidForecastRangeError as error:
            raise ValueError(str(error)) from None
        return end_date


class ForecastRow(BaseModel):
    datetime: str
    value: float
    type: Literal["historical", "forecast"]
    p10: float | None = None
    p90: float | None = None


class DailyForecastRow(ForecastRow):
    """A local day's sum, and how much of the day it covers."""

    complete: bool = Field(
        description="True when the value covers the whole local day; false when the data start, a gap "
        "or the end of the forecast horizon cut it short (the sum is then of fewer hours)"
    )
    hours: float = Field(description="Hours of the day the value sums (measured plus forecast)")
    forecast_hours: float = Field(description="Of those, hours that are forecast rather than measured")


class ForecastResponse(BaseModel):
    meter_id: str
    meter_type: str
    model_kind: str
    model_version: str | None
    resolution: str
    forecast_data: list[DailyForecastRow | ForecastRow]
