"""The HTTP API: ``uvicorn main_dramatiq:app --host 0.0.0.0 --port 8000``.

With DEBUG=true, ``make up`` runs it under ``python -m service.source_watch``, which restarts it when
the project's source changes.

It queues training jobs on Redis and reads their status; it never imports TensorFlow at start-up
(the forecast route loads models lazily, on first use).
"""

from __future__ import annotations

from fastapi import FastAPI

from api import events_routes, forecast_routes, health_routes, metrics, model_routes, training_routes
from api.body_limit import BodySizeLimitMiddleware
from api.errors import install_error_handlers
from api.security import ApiKeyMiddleware
from config import get_settings
from logger_config import configure_logging


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings, process_name="api")
    app = FastAPI(
        title="Energy Forecasting Service",
        version="0.1.0",
        description="Train one forecasting model per meter in the background and serve its forecasts.",
    )
    install_error_handlers(app)
    app.include_router(training_routes.router)
    app.include_router(events_routes.router)
    app.include_router(health_routes.router)
    app.include_router(model_routes.router)
    app.include_router(forecast_routes.router)
    app.include_router(metrics.router)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        timeout_seconds=settings.request_body_timeout_seconds,
    )
    app.add_middleware(metrics.HttpMetricsMiddleware)  # counts the 413s too
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)  # outermost: checked first
    return app


app = create_app()
