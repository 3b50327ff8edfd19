"""Hostile input, error bodies and the optional API key, against a real API process with API_KEY set.

Hostile ids must be refused (422) before they reach a path, a query or a log line; every error body
has ``detail`` and a human ``message``; every endpoint but ``/health/*`` needs the key; the key never
shows up in a response or a log.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis

import test_dramatiq_system as system_check
from tests.integration.faults_support import api_only
from tests.integration.stack import Stack, stack_environment
from tests.service_processes import InfluxServer, RedisServer

API_KEY = "k3y-" + uuid.uuid4().hex
LONG = "x" * 10_000
HOSTILE_IDS = {
    "quote": "a'b",
    "double quote": 'a"b',
    "backslash": "a\\b",
    "newline": "a\nb",
    "parent dir": "../etc",
    "dot dot": "..",
    "unicode": "mètre",
    "cjk": "电表",
    "nul": "a\x00b",
    "influxql": "m1' OR meter_id =~ /.*/",
    "10,000 chars": LONG,
}
BODY_TIMEOUT_SECONDS = 1.5
HOSTILE_TYPES = {"quote": "electricity'", "parent dir": "../electricity", "10,000 chars": LONG}


@pytest.fixture(scope="module")
def api(
    redis_server: RedisServer, influxdb_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("api-security")
    redis_server.start()
    env = stack_environment(
        redis_url=redis_server.url,
        influx_url=influxdb_server.url,
        database=f"security_{uuid.uuid4().hex[:8]}",
        workdir=workdir,
        extra={"API_KEY": API_KEY, "REQUEST_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS)},
    )
    with api_only(env, workdir, headers={"X-API-Key": API_KEY}) as running:
        yield running


def _job_count(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return len(client.keys("ef:job:*"))
    finally:
        client.close()


# -- hostile input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("meter_id", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_hostile_meter_ids_are_refused_everywhere(api: Stack, meter_id: str) -> None:
    jobs_before = _job_count(api.env["REDIS_URL"])
    forecast_body = {"meter_type": "electricity", "start_date": "2018-08-01", "end_date": "2018-08-02"}

    train = api.client.post("/trainmodel/", json={"meter_id": meter_id, "meter_type": "electricity"})
    forecast = api.client.post("/forecast/", json={"meter_id": meter_id, **forecast_body})
    models = api.client.get(f"/models/electricity/{quote(meter_id, safe='')}")

    assert train.status_code == 422, train.text
    assert forecast.status_code == 422, forecast.text
    # A '/' inside the id makes the path match no route at all (404): it never reaches the registry.
    # HTTP clients resolve a '..' segment themselves, so that request asks for another URL.
    expected = {404} if "/" in meter_id else {307, 404} if meter_id == ".." else {422}
    assert models.status_code in expected, models.text
    for reply in (train, forecast, models):
        assert LONG not in reply.text, "hostile input must not be echoed back"
    assert _job_count(api.env["REDIS_URL"]) == jobs_before
    assert not (Path(api.env["MODELS_DIR"]).parent / "etc").exists()


@pytest.mark.parametrize("meter_type", HOSTILE_TYPES.values(), ids=HOSTILE_TYPES.keys())
def test_hostile_meter_types_are_refused_everywhere(api: Stack, meter_type: str) -> None:
    train = api.client.post("/trainmodel/", json={"meter_id": "m1", "meter_type": meter_type})
    forecast = api.client.post(
        "/forecast/",
        json={
            "meter_id": "m1",
            "meter_type": meter_type,
            "start_date": "2018-08-01",
            "end_date": "2018-08-02",
        },
    )
    models = api.client.get(f"/models/{quote(meter_type, safe='')}/m1")

    assert train.status_code == 422 and forecast.status_code == 422, (train.text, forecast.text)
    assert models.status_code == (404 if "/" in meter_type else 422), models.text
    assert all(LONG not in reply.text for reply in (train, forecast, models))


HOSTILE_TASK_IDS = {
    "quote": "a'b",
    "backslash": "a\\b",
    "parent dir": "a/../b",
    "space": "a b",
    "unicode": "mètre",
    "65 chars": "y" * 65,
    "10,000 chars": LONG,
    "terminal escape": "\x1b[2J\x1b[31mpwned",
    "newline": "ok\r\nX-Injected: 1",
    "nul": "a\x00b",
    "direction override": "abc\u202edcba",
    "uuid and more": f"{uuid.uuid4()}\n",
}


@pytest.mark.parametrize("task_id", HOSTILE_TASK_IDS.values(), ids=HOSTILE_TASK_IDS.keys())
def test_hostile_task_ids_get_404_and_are_not_echoed(api: Stack, task_id: str) -> None:
    path_id = quote(task_id, safe="")
    for reply in (
        api.client.get(f"/trainmodel/status/{path_id}"),
        api.client.get(f"/trainmodel/status/{path_id}/events"),
        api.client.delete(f"/trainmodel/{path_id}"),
    ):
        if "/" in task_id:  # no route has a '/' inside an id: Starlette's own 404
            assert reply.status_code == 404, reply.text
            continue
        _assert_error_body(reply, 404, "task ids are the UUIDs that POST /trainmodel/ returns")
        assert task_id not in reply.text and task_id[:8] not in reply.json()["message"], reply.text


def test_a_task_id_is_echoed_only_in_its_canonical_form(api: Stack) -> None:
    task_id = str(uuid.uuid4())

    unknown = api.client.get(f"/trainmodel/status/{task_id.upper()}")

    _assert_error_body(unknown, 404, f"No training task with id '{task_id}'")


def test_a_hostile_meter_type_is_shown_escaped_and_cut(api: Stack) -> None:
    meter_type = "elec\x1b[2J\r\nX-Injected: 1"

    reply = api.client.post("/trainmodel/", json={"meter_id": "m1", "meter_type": meter_type})

    _assert_error_body(reply, 422, "Unknown meter_type 'elec\\x1b[2J\\r\\nX-Injected: 1'")
    assert "\x1b" not in reply.text and "\\u001b" not in reply.text, (
        "the control character itself never appears"
    )


# -- error bodies ------------------------------------------------------------------------------------


def _assert_error_body(reply: httpx.Response, status: int, says: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert "detail" in body, body
    assert isinstance(body["message"], str) and says in body["message"], body


def test_every_error_body_has_detail_and_a_message(api: Stack) -> None:
    forecast = {"meter_id": "m1", "meter_type": "electricity", "start_date": "2018-08-01"}
    queued = api.client.post("/trainmodel/", json={"meter_id": "error_bodies", "meter_type": "electricity"})
    task_id = queued.json()["task_id"]
    assert api.client.delete(f"/trainmodel/{task_id}").status_code == 200

    _assert_error_body(api.client.get("/models/", headers={"X-API-Key": "wrong"}), 401, "API key")
    _assert_error_body(api.client.get("/no-such-endpoint"), 404, "No such endpoint")
    _assert_error_body(api.client.put("/forecast/"), 405, "does not accept")
    _assert_error_body(api.client.get(f"/trainmodel/status/{uuid.uuid4()}"), 404, "No training task")
    _assert_error_body(api.client.get("/models/electricity/never_trained"), 404, "No trained model")
    _assert_error_body(api.client.delete(f"/trainmodel/{task_id}"), 409, "already finished")
    _assert_error_body(api.client.post("/trainmodel/", json={"meter_id": "m1"}), 422, "meter_type")
    _assert_error_body(
        api.client.post("/forecast/", json={**forecast, "end_date": "2018-07-01"}), 422, "end_date must be"
    )
    _assert_error_body(
        api.client.post("/forecast/", json={**forecast, "end_date": "2018-08-02"}), 404, "No trained model"
    )


UNREADABLE_BODIES = {
    "invalid JSON": ({"content-type": "application/json"}, b'{"meter_id": "m1",', "not valid JSON"),
    "text/plain": ({"content-type": "text/plain"}, b'{"meter_id": "m1"}', "Content-Type header must be"),
    "form": ({"content-type": "application/x-www-form-urlencoded"}, b"meter_id=m1", "not sent as JSON"),
    "no content type": ({}, b'{"meter_id": "m1"}', "not sent as JSON"),
    "empty": ({"content-type": "application/json"}, b"", "The body is empty"),
    "array": ({"content-type": "application/json"}, b"[1, 2]", "JSON but not an object"),
    "string": ({"content-type": "application/json"}, b'"m1"', "JSON but not an object"),
}


@pytest.mark.parametrize(
    ("dates", "field", "says"),
    [
        (("9999-12-30", "9999-12-31"), "start_date", "9999-12-30 is outside the supported dates"),
        (("0001-01-01", "2018-08-01"), "start_date", "0001-01-01 is outside the supported dates"),
        (
            ("2262-04-12", "2262-04-12"),
            "start_date",
            "2262-04-12 is outside the supported dates 1900-01-01 .. 2199-12-31",
        ),
        ((20180801, "2018-08-01"), "start_date", "use a date written YYYY-MM-DD"),
        (("2018-08-01T00:00:00Z", "2018-08-01"), "start_date", "use a date written YYYY-MM-DD"),
        (("2018-08-01", 1533081600), "end_date", "use a date written YYYY-MM-DD"),
        (
            ("\uff12\uff10\uff11\uff18-\uff10\uff18-\uff10\uff11", "2018-08-01"),
            "start_date",
            "use a date written YYYY-MM-DD",
        ),
        (("2017-02-29", "2017-03-01"), "start_date", "2017-02-29 is not a day of the calendar"),
        (("2018-08-03", "2018-08-01"), "end_date", "end_date must be on or after start_date"),
        (("2017-07-31", "2018-08-01"), "end_date", "The date range is too long: at most 366 days"),
    ],
)
def test_unservable_forecast_dates_get_422_naming_the_field(
    api: Stack, dates: tuple[object, object], field: str, says: str
) -> None:
    start, end = dates
    body = {"meter_id": "m1", "meter_type": "electricity", "start_date": start, "end_date": end}

    reply = api.client.post("/forecast/", json=body)

    _assert_error_body(reply, 422, f"{field}: {says}")
    assert "Value error" not in reply.json()["message"]
    assert reply.json()["detail"][0]["loc"] == ["body", field]


@pytest.mark.parametrize(
    ("headers", "body", "problem"), UNREADABLE_BODIES.values(), ids=UNREADABLE_BODIES.keys()
)
def test_a_body_that_is_no_json_object_gets_an_example_to_send(
    api: Stack, headers: dict[str, str], body: bytes, problem: str
) -> None:
    train = api.client.post("/trainmodel/", content=body, headers=headers)
    forecast = api.client.post("/forecast/", content=body, headers=headers)

    _assert_error_body(train, 422, problem)
    _assert_error_body(
        train, 422, 'send a JSON object like {"meter_id": "pjm_ekpc", "meter_type": "electricity"}'
    )
    _assert_error_body(forecast, 422, problem)
    _assert_error_body(forecast, 422, '"start_date": "2018-08-02", "end_date": "2018-08-03"')
    assert isinstance(train.json()["detail"], list), "detail keeps FastAPI's error list"


# -- body size limit ---------------------------------------------------------------------------------

MAX_REQUEST_BYTES = 64 * 1024


def _raw_answer(connection: socket.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = connection.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def test_a_declared_body_over_64_kib_gets_413_before_it_is_sent(api: Stack) -> None:
    request = (
        "POST /trainmodel/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {API_KEY}\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as connection:
        connection.sendall(request.encode())  # and not one byte of the 100 MiB body
        answer = _raw_answer(connection)

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert "larger than 65536 bytes" in json.loads(body)["message"]


def test_a_body_that_never_completes_gets_408_and_queues_nothing(api: Stack) -> None:
    request = (
        "POST /trainmodel/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {API_KEY}\r\nContent-Length: 1000\r\n\r\n" + '{"meter_id": "slow'
    )
    jobs_before = _job_count(api.env["REDIS_URL"])

    with socket.create_connection(("127.0.0.1", api.port), timeout=BODY_TIMEOUT_SECONDS + 10) as connection:
        connection.sendall(request.encode())  # then nothing: 980 bytes short
        answer = _raw_answer(connection)
        closed = connection.recv(1) == b""

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:300]
    assert f"did not arrive within {BODY_TIMEOUT_SECONDS:g} s" in json.loads(body)["message"]
    assert closed, "the connection must be closed: the rest of the body is unread"
    assert _job_count(api.env["REDIS_URL"]) == jobs_before


def test_a_body_over_64_kib_gets_413_with_or_without_content_length(api: Stack) -> None:
    body = json.dumps({"meter_id": "m1", "meter_type": "electricity", "padding": "x" * MAX_REQUEST_BYTES})
    jobs_before = _job_count(api.env["REDIS_URL"])

    declared = api.client.post("/trainmodel/", content=body, headers={"content-type": "application/json"})
    chunked = api.client.post(
        "/trainmodel/",
        content=(body[i : i + 4096].encode() for i in range(0, len(body), 4096)),
        headers={"content-type": "application/json"},
    )

    assert "content-length" not in chunked.request.headers
    _assert_error_body(declared, 413, "larger than 65536 bytes")
    _assert_error_body(chunked, 413, "larger than 65536 bytes")
    assert _job_count(api.env["REDIS_URL"]) == jobs_before


def test_a_chunked_body_within_the_limit_is_served_as_usual(api: Stack) -> None:
    body = json.dumps(
        {"meter_id": "m1", "meter_type": "electricity", "start_date": "2018-08-02", "end_date": "2018-08-01"}
    )
    padded = body[:-1] + " " * (MAX_REQUEST_BYTES - len(body)) + "}"

    reply = api.client.post(
        "/forecast/",
        content=(padded[i : i + 1000].encode() for i in range(0, len(padded), 1000)),
        headers={"content-type": "application/json"},
    )

    _assert_error_body(reply, 422, "end_date must be on or after start_date")


# -- API key -----------------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/trainmodel/status/some-task"),
    ("POST", "/trainmodel/"),
    ("DELETE", "/trainmodel/some-task"),
    ("POST", "/forecast/"),
    ("GET", "/models/"),
    ("GET", "/models/electricity/m1"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/health-and-more"),
    ("GET", "/health/%2e%2e/models/"),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"X-API-Key": API_KEY.upper()},
        {"X-API-Key": API_KEY[:-1]},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": API_KEY},
    ],
    ids=["none", "wrong", "wrong case", "prefix", "wrong bearer", "basic scheme", "no scheme"],
)
def test_every_endpoint_but_health_needs_the_key(api: Stack, headers: dict[str, str]) -> None:
    api.client.headers.pop("X-API-Key", None)
    try:
        for method, path in PROTECTED:
            reply = api.client.request(method, path, headers=headers)
            assert reply.status_code == 401, (method, path, reply.status_code)
            assert reply.headers["www-authenticate"].startswith("Bearer")
            assert "X-API-Key" in reply.json()["message"] and API_KEY not in reply.text
        for path in ("/health/", "/health/worker"):
            assert api.client.get(path, headers=headers).status_code in (200, 503)
    finally:
        api.client.headers["X-API-Key"] = API_KEY


@pytest.mark.parametrize(
    "headers", [{"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}], ids=["header", "bearer"]
)
def test_the_key_opens_every_endpoint(api: Stack, headers: dict[str, str]) -> None:
    api.client.headers.pop("X-API-Key", None)
    try:
        status = api.client.get("/trainmodel/status/some-task", headers=headers)
        models = api.client.get("/models/", headers=headers)
        schema = api.client.get("/openapi.json", headers=headers)
    finally:
        api.client.headers["X-API-Key"] = API_KEY

    assert status.status_code == 404 and models.status_code == 200 and schema.status_code == 200


@pytest.mark.parametrize("given_by", ["option", "API_KEY", "nobody"])
def test_the_deployment_check_sends_the_key(
    api: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], given_by: str
) -> None:
    monkeypatch.delenv("API_KEY", raising=False)
    argv = ["--base-url", api.base_url]
    if given_by == "option":
        argv += ["--api-key", API_KEY]
    elif given_by == "API_KEY":
        monkeypatch.setenv("API_KEY", API_KEY)
    arguments = system_check.parse_arguments(argv)

    with system_check.api_client(arguments.base_url, arguments.api_key) as client:
        checks = system_check.SystemCheck(client, "m1", "electricity", timeout_seconds=1)
        checks.run("unknown task id", checks.unknown_task)
        checks.run("invalid meter_type", checks.bad_meter_type)

    output = capsys.readouterr().out
    assert checks.failures == (2 if given_by == "nobody" else 0), output
    assert API_KEY not in output


def test_the_key_never_reaches_a_log(api: Stack) -> None:
    api.client.get("/trainmodel/status/some-task")
    api.client.get("/trainmodel/status/some-task", headers={"Authorization": f"Bearer {API_KEY}x"})
    api.client.post("/trainmodel/", json={"meter_id": API_KEY, "meter_type": "no-such-type"})

    logs = [api.api.log_path, *Path(api.env["LOG_DIR"]).glob("*.log")]
    assert len(logs) >= 2
    for path in logs:
        assert API_KEY not in path.read_text(errors="replace"), path


@pytest.mark.parametrize(
    "body",
    [
        b'{"meter_id": "m1", "meter_type": "electricity", "x": ' + b"[" * 1100 + b"]" * 1100 + b"}",
        b'{"meter_id": "m\xff\xfe", "meter_type": "electricity"}',
        b'{"meter_id": "m1", "meter_type": "electricity", "x": ' + b"7" * 5000 + b"}",
    ],
    ids=["nested 1,100 deep", "not utf-8", "5,000-digit number"],
)
def test_a_body_the_parser_gives_up_on_gets_400_saying_why(api: Stack, body: bytes) -> None:
    jobs_before = _job_count(api.env["REDIS_URL"])

    reply = api.client.post("/trainmodel/", content=body, headers={"content-type": "application/json"})

    _assert_error_body(
        reply, 400, "The body could not be parsed as JSON (too deeply nested, a number over 4,300 digits"
    )
    assert _job_count(api.env["REDIS_URL"]) == jobs_before


def test_worker_health_without_a_worker_is_503_saying_what_to_start(api: Stack) -> None:
    reply = api.client.get("/health/worker", headers={"X-API-Key": ""})

    _assert_error_body(reply, 503, "No training worker is alive: start one with 'python dramatiq_worker.py'")
    assert reply.json()["live_workers"] == 0
