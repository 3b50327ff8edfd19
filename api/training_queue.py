"""Build training messages without importing the worker's code (and so without TensorFlow)."""

from __future__ import annotations

import dramatiq

#: Name of the actor in ``task_system``; the API and the worker agree on it and the queue.
TRAIN_ACTOR = "train_model"


def training_message(meter_id: str, meter_type: str, *, queue: str) -> dramatiq.Message[None]:
    return dramatiq.Message(
        queue_name=queue,
        actor_name=TRAIN_ACTOR,
        args=(meter_id, meter_type),
        kwargs={},
        options={},
    )
