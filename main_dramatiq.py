"""The HTTP API: ``uvicorn main_dramatiq:app --host 0.0.0.0 --port 8000`` (``--reload`` with DEBUG=true).

It queues training jobs on Redis and reads their status; it never imports TensorFlow at start-up
(the forecast route loads models lazily, on first use).
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api import events_routes, forecast_routes, health_routes, metrics, model_routes, training_routes
from api.security import ApiKeyMiddleware
from config import get_settings
from forecasting.errors import DataError, ForecastingError, ModelNotFoundError, SourceUnavailableError
from logger_config import configure_logging
from service.job_store import StoreUnavailableError

log = structlog.get_logger("api.errors")


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        field = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "path", "query"))
        parts.append(f"{field or 'request'}: {error.get('msg', 'invalid value')}")
    return "; ".join(parts)


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    # The raw input is not echoed back: it may be 10,000 characters or contain a secret.
    details = [
        {"loc": list(item.get("loc", ())), "msg": item.get("msg"), "type": item.get("type")}
        for item in error.errors()
    ]
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": details, "message": _validation_message(details)},
    )


async def _store_unavailable(request: Request, error: StoreUnavailableError) -> JSONResponse:
    log.warning("redis_unavailable", path=request.url.path, error=str(error))
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": "Redis is unavailable; try again shortly."},
    )


async def _forecasting_error(request: Request, error: ForecastingError) -> JSONResponse:
    if isinstance(error, ModelNotFoundError):
        code = status.HTTP_404_NOT_FOUND
    elif isinstance(error, SourceUnavailableError):
        code = status.HTTP_503_SERVICE_UNAVAILABLE
    elif isinstance(error, DataError):
        code = status.HTTP_422_UNPROCESSABLE_CONTENT
    else:
        code = status.HTTP_500_INTERNAL_SERVER_ERROR
        log.error("request_failed", path=request.url.path, error=str(error))
    return JSONResponse(status_code=code, content={"detail": str(error), "error_type": error.error_type})


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("request_crashed", path=request.url.path)
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content={"detail": "Internal error; the API log has the details."},
    )


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings, process_name="api")
    app = FastAPI(
        title="Energy Forecasting Service",
        version="0.1.0",
        description="Train one forecasting model per meter in the background and serve its forecasts.",
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(StoreUnavailableError, _store_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(ForecastingError, _forecasting_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(training_routes.router)
    app.include_router(events_routes.router)
    app.include_router(health_routes.router)
    app.include_router(model_routes.router)
    app.include_router(forecast_routes.router)
    app.include_router(metrics.router)
    app.add_middleware(metrics.HttpMetricsMiddleware)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)  # outermost: checked first
    return app


app = create_app()
