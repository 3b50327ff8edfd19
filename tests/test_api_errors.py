"""Every error body has ``detail`` and a human ``message``, whatever raised it.

A tiny app with the API's own handlers covers the errors the real routes cannot be made to raise on
demand (FastAPI's 400 for an unreadable body, a crash); the real API process is checked in
``tests/integration/test_api_security.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from api.errors import install_error_handlers
from forecasting.errors import DataError, ModelNotFoundError, SourceUnavailableError
from service.job_store import StoreUnavailableError


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/bad-body")
    def bad_body() -> None:
        raise HTTPException(400, "There was an error parsing the body")

    @app.get("/conflict")
    def conflict() -> None:
        raise HTTPException(409, "Task already finished.", headers={"X-Why": "finished"})

    @app.get("/data")
    def data() -> None:
        raise DataError("end_date must be on or after start_date.")

    @app.get("/model")
    def model() -> None:
        raise ModelNotFoundError("electricity", "m1")

    @app.get("/influx")
    def influx() -> None:
        raise SourceUnavailableError("InfluxDB did not answer.")

    @app.get("/redis")
    def redis() -> None:
        raise StoreUnavailableError("down")

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("secret internals")

    @app.post("/items")
    def items(count: int) -> None:
        return None

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("method", "path", "status", "says"),
    [
        ("GET", "/bad-body", 400, "The body could not be parsed as JSON (too deeply nested"),
        ("GET", "/conflict", 409, "already finished"),
        ("GET", "/data", 422, "end_date"),
        ("GET", "/model", 404, "No trained model"),
        ("GET", "/influx", 503, "InfluxDB"),
        ("GET", "/redis", 503, "Redis is unavailable"),
        ("GET", "/crash", 500, "Internal error"),
        ("POST", "/items?count=many", 422, "count"),
        ("GET", "/no-such-path", 404, "No such endpoint"),
        ("DELETE", "/data", 405, "does not accept that method"),
    ],
)
def test_every_error_body_has_detail_and_a_message(
    client: TestClient, method: str, path: str, status: int, says: str
) -> None:
    reply = client.request(method, path)

    assert reply.status_code == status, reply.text
    body = reply.json()
    assert "detail" in body and says in body["message"], body
    assert "secret internals" not in reply.text


def test_http_error_headers_are_kept(client: TestClient) -> None:
    reply = client.get("/conflict")

    assert reply.headers["x-why"] == "finished"
    assert reply.json() == {"detail": "Task already finished.", "message": "Task already finished."}


def test_validation_errors_keep_fastapis_detail_list(client: TestClient) -> None:
    body = client.post("/items?count=many").json()

    assert body["detail"][0]["loc"] == ["query", "count"] and body["detail"][0]["type"] == "int_parsing"
    assert "input" not in body["detail"][0], "raw input must not be echoed"
