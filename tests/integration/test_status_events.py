"""The status event stream against the real stack: a real training run seen through SSE."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.stack import Stack

ORDER = [
    "PENDING",
    "STARTED",
    "CONNECTING",
    "FETCHING_DATA",
    "VALIDATING_DATA",
    "TRAINING_MODEL",
    "SAVING_MODEL",
    "SUCCESS",
]
STREAM_TIMEOUT = httpx.Timeout(10.0, read=30.0)  # reads block at most one keep-alive interval


def read_events(stack: Stack, task_id: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every event of the stream, in order, as ``{"id", "event", "data"}``; returns when it ends."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    url = f"/trainmodel/status/{task_id}/events"
    with stack.client.stream("GET", url, headers=headers, timeout=STREAM_TIMEOUT) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = json.loads(value) if field == "data" else value
    return events


@pytest.fixture(scope="module")
def trained(observed_stack: Stack) -> tuple[str, list[dict[str, Any]]]:
    """A real training job followed live through its event stream from the moment it was queued."""
    reply = observed_stack.client.post(
        "/trainmodel/", json={"meter_id": "pjm_ekpc", "meter_type": "electricity"}
    )
    assert reply.status_code == 202, reply.text
    task_id = reply.json()["task_id"]
    return task_id, read_events(observed_stack, task_id)


def test_stream_delivers_every_state_in_order_and_ends_with_success(
    trained: tuple[str, list[dict[str, Any]]],
) -> None:
    task_id, events = trained

    states = [event["data"]["status"] for event in events]
    assert states[0] == "PENDING" and states[-1] == "SUCCESS", states
    assert states.count("SUCCESS") == 1
    distinct = list(dict.fromkeys(states))
    assert distinct == ORDER, f"expected every stage in order, got {distinct}"
    progress = [event["data"]["progress"] for event in events]
    assert progress == sorted(progress) and progress[-1] == 100
    assert sum(state == "TRAINING_MODEL" for state in states) > 1, "epoch progress steps must be streamed"
    assert all(event["event"] == "status" and event["data"]["task_id"] == task_id for event in events)
    ids = [tuple(int(part) for part in event["id"].split("-")) for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_reconnect_with_last_event_id_resumes_after_that_event(
    observed_stack: Stack, trained: tuple[str, list[dict[str, Any]]]
) -> None:
    task_id, events = trained
    middle = len(events) // 2

    resumed = read_events(observed_stack, task_id, headers={"Last-Event-ID": events[middle]["id"]})

    assert [event["id"] for event in resumed] == [event["id"] for event in events[middle + 1 :]]
    assert resumed[-1]["data"]["status"] == "SUCCESS"


def test_finished_job_replays_its_history_and_closes(
    observed_stack: Stack, trained: tuple[str, list[dict[str, Any]]]
) -> None:
    task_id, events = trained

    assert read_events(observed_stack, task_id) == events


def test_unknown_task_is_404(observed_stack: Stack) -> None:
    task_id = str(uuid.uuid4())

    reply = observed_stack.client.get(f"/trainmodel/status/{task_id}/events")

    assert reply.status_code == 404
    assert f"No training task with id '{task_id}'" in reply.json()["message"]


@pytest.mark.parametrize("event_id", ["$ or anything", "18446744073709551616", "99999999999999999999-0"])
def test_malformed_last_event_id_is_422(
    observed_stack: Stack, trained: tuple[str, list[dict[str, Any]]], event_id: str
) -> None:
    """Not an id, or numbers beyond Redis's 64-bit stream ids (which would make XREAD fail)."""
    reply = observed_stack.client.get(
        f"/trainmodel/status/{trained[0]}/events", headers={"Last-Event-ID": event_id}
    )

    assert reply.status_code == 422
    assert "Last-Event-ID must be the id of an event this stream sent" in reply.json()["message"]


def test_stream_of_a_failing_job_ends_with_failed_and_closes(observed_stack: Stack) -> None:
    reply = observed_stack.client.post(
        "/trainmodel/", json={"meter_id": "meter_without_readings", "meter_type": "gas"}
    )
    assert reply.status_code == 202, reply.text

    events = read_events(observed_stack, reply.json()["task_id"])

    states = [event["data"]["status"] for event in events]
    assert states[0] == "PENDING" and states[-1] == "FAILED", states
    assert states.count("FAILED") == 1 and "SUCCESS" not in states
    assert events[-1]["data"]["error"]["type"] == "DATA"


def test_stream_of_a_cancelled_job_ends_with_cancelled(
    observed_stack: Stack, trained: tuple[str, list[dict[str, Any]]]
) -> None:
    # A real meter: its job trains for seconds, so the DELETE always finds it queued or running.
    reply = observed_stack.client.post(
        "/trainmodel/", json={"meter_id": "pjm_ekpc", "meter_type": "electricity"}
    )
    assert reply.status_code == 202, reply.text
    task_id = reply.json()["task_id"]
    cancelled = observed_stack.client.delete(f"/trainmodel/{task_id}")
    assert cancelled.status_code == 200, cancelled.text

    events = read_events(observed_stack, task_id)

    assert events[-1]["data"]["status"] == "CANCELLED"
    assert events[0]["data"]["status"] == "PENDING"


def test_resuming_after_the_final_event_closes_without_repeating_it(
    observed_stack: Stack, trained: tuple[str, list[dict[str, Any]]]
) -> None:
    task_id, events = trained

    after_last = read_events(observed_stack, task_id, headers={"Last-Event-ID": events[-1]["id"]})
    ahead = read_events(observed_stack, task_id, headers={"Last-Event-ID": "99999999999999-0"})

    assert after_last == [] and ahead == []
