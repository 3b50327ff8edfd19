"""No-op Dramatiq actor for ``queue_dispatch.py``, on this project's broker setup or on a plain one.

``DISPATCH_FLAVOUR=project`` builds the broker exactly as the service does (:mod:`dramatiq_broker`:
its Redis client, heartbeat and maintenance settings, ``CurrentMessage``) and adds the per-message
worker middleware of :mod:`task_system` (Dramatiq's Prometheus metrics in multiprocess mode, job
outcome metrics). ``TrainingWorkerSetup`` is left out: it loads TensorFlow at boot and recycles a
process every few jobs, which is training policy, measured by ``startup.py``, not dispatch.
``DISPATCH_FLAVOUR=plain`` is ``RedisBroker(url=...)`` with Dramatiq's defaults.

Worker: ``python -m dramatiq benchmarks.dispatch_dramatiq``. Producer: ``python
benchmarks/dispatch_dramatiq.py COUNT`` prints ``SENT <start> <end>`` (epoch seconds).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import dramatiq  # noqa: E402
import redis  # noqa: E402

QUEUE = "dispatch_bench"
DONE_KEY = "dispatch_bench:done"
REDIS_URL = os.environ["REDIS_URL"]

if os.environ.get("DISPATCH_FLAVOUR", "project") == "project":
    from dramatiq_broker import broker
    from service.worker_metrics import JobOutcomeMetrics, WorkerPrometheus

    broker.add_middleware(JobOutcomeMetrics(lambda: None, actor_name="train_model"))  # type: ignore[arg-type, return-value]
    broker.add_middleware(WorkerPrometheus())
else:
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=REDIS_URL)
    dramatiq.set_broker(broker)

counter = redis.Redis.from_url(REDIS_URL)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(number: int) -> None:
    counter.incr(DONE_KEY)


if __name__ == "__main__":
    count = int(sys.argv[1])
    started = time.time()
    for number in range(count):
        noop.send(number)
    print(f"SENT {started} {time.time()}", flush=True)
