"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from config import get_settings
from forecasting.errors import InvalidMeterKeyError
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
MeterType = Annotated[str, Field(max_length=40, examples=["electricity"]), AfterValidator(_valid_meter_type)]


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
    start_date: date
    end_date: date
    resolution: Literal["daily", "hourly"] = "daily"
    fallback: Literal["none", "seasonal_naive"] = "none"


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
