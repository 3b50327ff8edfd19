"""Real Redis and InfluxDB servers, started by the tests on free 127.0.0.1 ports.

Integration tests talk to real services (never the machine's own Redis on 6379 or Influx on 8086),
and outage tests need to stop and restart them on the same port with the same data, which a
container-free subprocess gives us cheaply. Readiness is polled (Redis ``PING``, Influx
``GET /ping``), never assumed after a sleep.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import redis

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
_POLL_INTERVAL_SECONDS = 0.05


class ServiceBinaryMissingError(RuntimeError):
    """The server program is not installed; the message says how to install it."""


class ServiceStartError(RuntimeError):
    """The server exited or did not become ready; the message carries the tail of its log."""


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _ServerProcess:
    """One server subprocess with a fixed port and a private directory that outlive restarts."""

    binary: str = ""
    install_hint: str = ""

    def __init__(self, directory: Path | None = None) -> None:
        self.port = find_free_port()
        self._owns_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix=f"{self.binary}-test-"))
        self.log_path = self.directory / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    # -- what each server defines -------------------------------------------------------------------
    def _command(self, executable: str) -> list[str]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (no-op if running) and return once it answers."""
        if self.running:
            return
        executable = shutil.which(self.binary)
        if executable is None:
            raise ServiceBinaryMissingError(f"'{self.binary}' is not on PATH; {self.install_hint}.")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(executable),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServiceStartError(
                    f"{self.binary} exited with code {self._process.returncode}:\n{self._log_tail()}"
                )
            if self._is_ready():
                return
            time.sleep(_POLL_INTERVAL_SECONDS)
        self.kill()
        raise ServiceStartError(
            f"{self.binary} not ready after {READY_TIMEOUT_SECONDS:.0f} s:\n{self._log_tail()}"
        )

    def stop(self) -> None:
        """Ask the server to shut down (SIGTERM) and wait for it; kill it if it hangs."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its directory if this object created it."""
        self.stop()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> _ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


class RedisServer(_ServerProcess):
    """A throw-away ``redis-server`` without persistence."""

    binary = "redis-server"
    install_hint = "install it with: apt-get install redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self, executable: str) -> list[str]:
        return [
            executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
        ]  # fmt: skip

    def _is_ready(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


_INFLUX_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{directory}/meta"
  logging-enabled = false

[data]
  dir = "{directory}/data"
  wal-dir = "{directory}/wal"
  query-log-enabled = false
  trace-logging-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[retention]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  auth-enabled = false
"""


class InfluxServer(_ServerProcess):
    """A throw-away InfluxDB 1.x (``influxd``) with HTTP on ``port`` and RPC on ``rpc_port``."""

    binary = "influxd"
    install_hint = "install it with: apt-get install influxdb"

    def __init__(self, directory: Path | None = None) -> None:
        super().__init__(directory)
        self.rpc_port = find_free_port()
        self.config_path = self.directory / "influxdb.conf"
        self.config_path.write_text(
            _INFLUX_CONFIG.format(directory=self.directory, port=self.port, rpc_port=self.rpc_port),
            encoding="utf-8",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self, executable: str) -> list[str]:
        return [executable, "run", "-config", str(self.config_path)]

    def _is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204
        except httpx.HTTPError:
            return False
