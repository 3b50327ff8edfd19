"""Serve forecasts in the request and response shape of the system this service replaces."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends

from api import dependencies
from api.schemas import DailyForecastRow, ForecastRequest, ForecastResponse, ForecastRow
from config import Settings
from forecasting.meter_history import open_meter_history
from forecasting.registry import ModelRegistry

if TYPE_CHECKING:
    from forecasting.serving import ForecasterCache

router = APIRouter(tags=["forecast"])


@lru_cache(maxsize=1)
def forecaster_cache() -> ForecasterCache:
    # Imported on first use: serving needs pandas, which would slow the API's start-up by ~0.6 s.
    from forecasting.serving import ForecasterCache

    return ForecasterCache()


@router.post("/forecast/")
def forecast(
    request: ForecastRequest,
    settings: Annotated[Settings, Depends(dependencies.settings)],
    registry: Annotated[ModelRegistry, Depends(dependencies.model_registry)],
) -> ForecastResponse:
    """Measured values for past periods and the active model's forecast (with P10/P90) after the last reading.

    ``resolution`` is ``daily`` (sums per local day, the default) or ``hourly``. Each daily row says
    whether it covers the whole day (``complete``) and how many ``hours`` (``forecast_hours`` of them
    forecast) it sums: the first and last days of the data or of the forecast are often partial. Without a trained model
    the answer is 404, unless ``fallback`` is ``seasonal_naive``: then last week's values are the forecast
    and ``model_kind`` says so.
    """
    history = open_meter_history(settings.influxdb)
    try:
        from forecasting.serving import forecast_table

        table = forecast_table(
            request.meter_id,
            request.meter_type,
            start_date=request.start_date,
            end_date=request.end_date,
            resolution=request.resolution,
            use_fallback=request.fallback == "seasonal_naive",
            history=history,
            registry=registry,
            cache=forecaster_cache(),
            settings=settings,
        )
    finally:
        history.close()
    row_model = DailyForecastRow if request.resolution == "daily" else ForecastRow
    return ForecastResponse(
        meter_id=request.meter_id,
        meter_type=request.meter_type,
        model_kind=table.model_kind,
        model_version=table.model_version,
        resolution=request.resolution,
        forecast_data=[row_model(**row) for row in table.rows],
    )
