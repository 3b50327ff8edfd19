"""One shape for every error the API answers: ``{"detail": ..., "message": "<one sentence>"}``.

``detail`` keeps FastAPI's meaning, so clients written against FastAPI's defaults keep working: a
string, or for 422 the list of field errors (``loc``, ``msg``, ``type``). ``message`` is always one
human sentence saying what went wrong and what to do. The exception handlers below produce it for
everything FastAPI raises (400, 404, 405, 409, 422, 503, 500); the ASGI middlewares that answer
before FastAPI runs (401 in :mod:`api.security`, 413 in :mod:`api.body_limit`) use
:func:`send_error`.

Raw input is never echoed back: it may be 10,000 characters long, hold control characters or a
secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import Send

from forecasting.errors import DataError, ForecastingError, ModelNotFoundError, SourceUnavailableError
from service.job_store import StoreUnavailableError

log = structlog.get_logger("api.errors")

#: Sentences for Starlette's bare reason phrases (unknown path, wrong method).
ROUTING_MESSAGES = {
    status.HTTP_404_NOT_FOUND: "No such endpoint; GET /docs lists the API's endpoints.",
    status.HTTP_405_METHOD_NOT_ALLOWED: "This endpoint does not accept that method; GET /docs lists each endpoint's methods.",
}

#: FastAPI's 400 detail when reading or decoding a body failed in some other way than bad JSON.
FASTAPI_UNREADABLE_BODY = "There was an error parsing the body"


def error_content(message: str, detail: Any = None, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error: ``detail`` (``message`` unless given) and ``message``."""
    return {"detail": message if detail is None else detail, "message": message, **extra}


async def send_error(
    send: Send, status_code: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer an HTTP request with an error body straight from an ASGI middleware."""
    body = json.dumps(error_content(message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        field = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "path", "query"))
        text = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{field or 'request'}: {text}")
    return "; ".join(parts)


def body_example(request: Request) -> str:
    """The example body of the route's request model (``json_schema_extra``), as compact JSON."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(body_field, "field_info", None), "annotation", None)
    extra = getattr(model, "model_config", {}).get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return json.dumps(examples[0]) if examples else "{...} (see /docs)"


def unreadable_body_message(request: Request, errors: list[dict[str, Any]]) -> str | None:
    """A sentence for a body that is no JSON object at all, or None when it is one.

    FastAPI reports these as one raw error about the whole body ("JSON decode error", "Input should
    be a valid dictionary"), which tells a client neither what is wrong nor what to send.
    """
    whole_body = [error for error in errors if error["loc"] == ["body"] or error["type"] == "json_invalid"]
    if not whole_body:
        return None
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if any(error["type"] == "json_invalid" for error in whole_body):
        problem = "The body is not valid JSON"
    elif whole_body[0]["type"] == "missing":
        problem = "The body is empty"
    elif content_type != "application/json" and not content_type.endswith("+json"):
        problem = "The body was not sent as JSON (the Content-Type header must be application/json)"
    else:
        problem = "The body is JSON but not an object"
    return (
        f"{problem}: send a JSON object like {body_example(request)} with 'Content-Type: application/json'."
    )


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    details = [
        {"loc": list(item.get("loc", ())), "msg": item.get("msg"), "type": item.get("type")}
        for item in error.errors()
    ]
    message = unreadable_body_message(request, details) or validation_message(details)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content=error_content(message, details)
    )


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    message = str(error.detail)
    if message == HTTPStatus(error.status_code).phrase:  # Starlette's bare "Not Found": say more
        message = ROUTING_MESSAGES.get(error.status_code, message)
    elif message == FASTAPI_UNREADABLE_BODY:
        # FastAPI says this when Python's JSON parser fails other than on invalid syntax: nesting
        # deep enough to exhaust it (about 1,000 levels), an integer over 4,300 digits, bytes that
        # are not UTF-8. FastAPI does not pass the cause on, so the message lists them.
        message = (
            "The body could not be parsed as JSON (too deeply nested, a number over 4,300 digits, "
            f"or not UTF-8 text): send a JSON object like {body_example(request)}."
        )
    return JSONResponse(
        status_code=error.status_code,
        content=error_content(message, error.detail),
        headers=error.headers,
    )


async def _store_unavailable(request: Request, error: StoreUnavailableError) -> JSONResponse:
    log.warning("redis_unavailable", path=request.url.path, error=str(error))
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content=error_content("Redis is unavailable; try again shortly."),
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
    return JSONResponse(status_code=code, content=error_content(str(error), error_type=error.error_type))


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("request_crashed", path=request.url.path)
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content=error_content("Internal error; the API log has the details."),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into :func:`error_content`."""
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(StoreUnavailableError, _store_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(ForecastingError, _forecasting_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
