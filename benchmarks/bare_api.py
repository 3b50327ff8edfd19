"""The ceiling of the API benchmark: the least a FastAPI app can do for the same two routes.

``POST /trainmodel/`` parses the same JSON body, pushes one id onto a Redis list (the enqueue) and
writes one hash (the status); ``GET /trainmodel/status/{task_id}`` reads that hash back. Async
endpoints on ``redis.asyncio``, no validation beyond the body's two strings, no middleware. Served by
the same uvicorn command line as the real API, against the same Redis (``REDIS_URL``), it measures
what the server, the framework and Redis cost, so the real API's figures can be read as a share of it.
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache
from typing import Any

import redis.asyncio
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI(title="bare ceiling")


class TrainBody(BaseModel):
    meter_id: str
    meter_type: str


@lru_cache(maxsize=1)
def client() -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


@app.post("/trainmodel/", status_code=202)
async def queue(body: TrainBody) -> dict[str, Any]:
    task_id = str(uuid.uuid4())
    await client().rpush("bare:queue", task_id)
    status = {"task_id": task_id, "meter_id": body.meter_id, "status": "PENDING", "progress": 0}
    await client().hset(f"bare:job:{task_id}", mapping=status)
    return status


@app.get("/trainmodel/status/{task_id}")
async def read_status(task_id: str) -> dict[str, Any]:
    status = await client().hgetall(f"bare:job:{task_id}")
    if not status:
        raise HTTPException(404, "unknown task")
    return status
