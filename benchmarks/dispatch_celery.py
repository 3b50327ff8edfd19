"""No-op Celery task for ``queue_dispatch.py`` (the plain-Celery reference; benchmark-only dependency).

Worker: ``celery -A benchmarks.dispatch_celery worker``. Producer: ``python
benchmarks/dispatch_celery.py COUNT`` prints ``SENT <start> <end>`` (epoch seconds).
"""

from __future__ import annotations

import os
import sys
import time

import redis
from celery import Celery

QUEUE = "dispatch_bench"
DONE_KEY = "dispatch_bench:done"
REDIS_URL = os.environ["REDIS_URL"]

app = Celery("dispatch_bench", broker=REDIS_URL)
app.conf.update(task_ignore_result=True, task_default_queue=QUEUE, broker_connection_retry_on_startup=True)
counter = redis.Redis.from_url(REDIS_URL)


@app.task(name="noop")
def noop(number: int) -> None:
    counter.incr(DONE_KEY)


if __name__ == "__main__":
    count = int(sys.argv[1])
    started = time.time()
    for number in range(count):
        noop.delay(number)
    print(f"SENT {started} {time.time()}", flush=True)
