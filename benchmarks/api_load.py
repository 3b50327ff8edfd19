"""API throughput and latency: ``POST /trainmodel/`` and ``GET /trainmodel/status/{id}`` against a ceiling.

Why a ceiling: requests per second on a shared 2-core machine drift from run to run, so the real API
(``main_dramatiq:app``) is measured next to :mod:`benchmarks.bare_api`, a bare async FastAPI app
doing one enqueue plus one Redis hash write (POST) or one hash read (GET), served by the same uvicorn
command line against the same private Redis, in the same run. Targets (issue 4): POST at least 50%
of the ceiling's requests/s and p99 under 25 ms at 200 requests/s; status reads at least 70%.

Load: ``wrk`` (``apt-get install wrk``) with ``--connections`` connections for ``--duration`` seconds
per run; POST bodies carry distinct meter ids (the API dedupes per meter), GETs cycle through ids
created beforehand. The fixed-rate run uses ``--rate / 10`` wrk connections that each pause 100 ms
between requests (about ``--rate`` requests/s while latency stays small). No worker runs: the queue
just grows and is flushed between runs. Each app is measured ``--rounds`` times, alternating, and
the best round counts (the least disturbed by other load on the machine).

Run: ``.venv/bin/python benchmarks/api_load.py`` (``--help``); about 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.report import machine_description, verdict, write_section  # noqa: E402
from tests.integration.stack import ServiceProcess, wait_for  # noqa: E402
from tests.service_processes import RedisServer, find_free_port  # noqa: E402

APPS = {"bare": "benchmarks.bare_api:app", "api": "main_dramatiq:app"}
STATUS_IDS = 500
PACED_PAUSE_MS = 100

_WRK_SCRIPT = """
local counter = 0
local thread_count = 0
local ids = {%(ids)s}
function setup(thread)
  thread:set("tag", tostring(thread_count))
  thread_count = thread_count + 1
end
function request()
  counter = counter + 1
  if "%(method)s" == "POST" then
    local body = string.format('{"meter_id":"b%(run)s_%%s_%%d","meter_type":"electricity"}', tag, counter)
    return wrk.format("POST", "/trainmodel/", {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", "/trainmodel/status/" .. ids[(counter %% #ids) + 1])
end
%(delay)s
function done(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %%d, "seconds": %%f, "p50_ms": %%f, "p99_ms": %%f, "errors": %%d, "non_2xx": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


@dataclass
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    failed: int


def run_wrk(
    url: str, method: str, ids: list[str], *, connections: int, seconds: int, rate: float | None = None
) -> LoadResult:
    """Closed-loop load; with ``rate``, each connection pauses ``PACED_PAUSE_MS`` after each answer."""
    pause = f"function delay() return {PACED_PAUSE_MS} end" if rate else ""
    script = _WRK_SCRIPT % {
        "ids": ",".join(f'"{task_id}"' for task_id in ids) or '"none"',
        "method": method,
        "run": uuid.uuid4().hex[:8],
        "delay": pause,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", handle.name, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(handle.name).unlink()
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    figures = json.loads(line.removeprefix("RESULT "))
    return LoadResult(
        figures["requests"] / figures["seconds"],
        figures["p50_ms"],
        figures["p99_ms"],
        figures["errors"] + figures["non_2xx"],
    )


def create_ids(url: str, count: int) -> list[str]:
    with httpx.Client(base_url=url, timeout=10) as client:
        return [
            client.post("/trainmodel/", json={"meter_id": f"ids_{n}", "meter_type": "electricity"}).json()[
                "task_id"
            ]
            for n in range(count)
        ]


def serve(app: str, env: dict[str, str], workdir: Path, extra_args: list[str]) -> tuple[ServiceProcess, str]:
    port = find_free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *extra_args]
    server = ServiceProcess(app, command, env, workdir / f"{app.split(':')[0]}.out")
    server.start()
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/trainmodel/status/probe", timeout=1).status_code == 404
        except httpx.TransportError:
            return False

    wait_for(answers, timeout=30, what=f"{app} to answer")
    return server, url


def measure(
    app: str, redis_url: str, workdir: Path, args: argparse.Namespace
) -> tuple[LoadResult, LoadResult, LoadResult]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "LOG_DIR": str(workdir / "logs"),
        "INFLUXDB_CONFIG_FILE": str(workdir / "none.json"),
    }
    server, url = serve(app, env, workdir, args.uvicorn_args)
    store = redis.Redis.from_url(redis_url)
    try:
        posts = run_wrk(url, "POST", [], connections=args.connections, seconds=args.duration)
        store.flushdb()
        ids = create_ids(url, STATUS_IDS)
        reads = run_wrk(url, "GET", ids, connections=args.connections, seconds=args.duration)
        store.flushdb()
        paced = paced_run(url, args.rate, args.duration)
        store.flushdb()
    finally:
        server.stop()
    return posts, reads, paced


def paced_run(url: str, rate: float, seconds: int) -> LoadResult:
    """POST load at about ``rate`` requests/s: connections that each pause between requests.

    A connection sends somewhat fewer than 1000 / ``PACED_PAUSE_MS`` requests/s (its latency and wrk's
    timer add to the pause), so a 3-second probe measures what ``rate / 10`` connections reach and
    the measured run scales the connections up to match ``rate``.
    """
    probe_connections = max(1, round(rate * PACED_PAUSE_MS / 1000))
    probe = run_wrk(url, "POST", [], connections=probe_connections, seconds=3, rate=rate)
    connections = max(1, math.ceil(probe_connections * rate / max(probe.requests_per_second, 1.0)))
    return run_wrk(url, "POST", [], connections=connections, seconds=seconds, rate=rate)


def render(best: dict[str, tuple[LoadResult, LoadResult, LoadResult]], args: argparse.Namespace) -> str:
    (bare_post, bare_get, bare_paced), (api_post, api_get, api_paced) = best["bare"], best["api"]
    post_ratio = api_post.requests_per_second / bare_post.requests_per_second
    get_ratio = api_get.requests_per_second / bare_get.requests_per_second
    rows = [
        ("POST /trainmodel/", "bare ceiling", bare_post),
        ("POST /trainmodel/", "API", api_post),
        ("GET /trainmodel/status/{id}", "bare ceiling", bare_get),
        ("GET /trainmodel/status/{id}", "API", api_get),
        (f"POST, paced at {args.rate:.0f} req/s", "bare ceiling", bare_paced),
        (f"POST, paced at {args.rate:.0f} req/s", "API", api_paced),
    ]
    table = "\n".join(
        f"| {what} | {app} | {r.requests_per_second:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.failed} |"
        for what, app, r in rows
    )
    return f"""Run with `.venv/bin/python benchmarks/api_load.py` (wrk, {args.connections} connections,
{args.duration} s per run, best of {args.rounds} alternating rounds; the fixed-rate run uses
wrk connections pausing {PACED_PAUSE_MS} ms between requests, as many as a 3 s probe shows reach
{args.rate:.0f} req/s). Both apps served by `uvicorn <app> --host 127.0.0.1 --port <free> {" ".join(args.uvicorn_args)}`
against one private redis-server, no worker running. Load generator and servers share the cores.
Machine: {machine_description()}.

| Request | App | req/s | p50 ms | p99 ms | failed |
|---|---|---:|---:|---:|---:|
{table}

- POST: {post_ratio:.1%} of the ceiling's req/s (target >= 50%): {verdict(post_ratio >= 0.5)}.
- POST p99 at {api_paced.requests_per_second:.0f} req/s: {api_paced.p99_ms:.1f} ms (target < 25 ms at
  {args.rate:.0f} req/s): {verdict(api_paced.p99_ms < 25 and api_paced.requests_per_second >= 0.97 * args.rate)}.
- Status reads: {get_ratio:.1%} of the ceiling's req/s (target >= 70%): {verdict(get_ratio >= 0.7)}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="Seconds per load run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0, help="Requests/s of the fixed-rate POST run")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds per app; the best counts")
    parser.add_argument(
        "--uvicorn-args",
        nargs="*",
        default=[],
        help="Extra uvicorn options for both apps, e.g. --no-access-log",
    )
    parser.add_argument("--no-write", action="store_true", help="Print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install wrk")

    rounds: dict[str, list[tuple[LoadResult, LoadResult, LoadResult]]] = {name: [] for name in APPS}
    with tempfile.TemporaryDirectory(prefix="api-load-") as directory, RedisServer() as redis_server:
        for number in range(args.rounds):
            for name, app in APPS.items():
                result = measure(app, redis_server.url, Path(directory), args)
                rounds[name].append(result)
                post, get, paced = result
                print(
                    f"round {number + 1} {name:5}: POST {post.requests_per_second:7.0f} req/s p99 {post.p99_ms:5.1f} ms"
                    f" | GET {get.requests_per_second:7.0f} req/s p99 {get.p99_ms:5.1f} ms"
                    f" | POST@{args.rate:.0f}/s p99 {paced.p99_ms:5.1f} ms",
                    flush=True,
                )
    best = {
        name: (
            max((r[0] for r in results), key=lambda r: r.requests_per_second),
            max((r[1] for r in results), key=lambda r: r.requests_per_second),
            min((r[2] for r in results), key=lambda r: r.p99_ms),
        )
        for name, results in rounds.items()
    }
    section = render(best, args)
    print(section)
    if not args.no_write:
        write_section("API load", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
