"""Redis and InfluxDB for a local stack: is one answering already, and how to run our own.

A local stack must never replace a server someone else runs, so everything starts with a probe of
the configured URL; only a URL on this machine that nobody answers gets a server of ours, bound to
the loopback interface and keeping its files under ``run/``.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import redis

PROBE_TIMEOUT_SECONDS = 1.0
DEFAULT_INFLUXDB_RPC_BIND = "127.0.0.1:8088"


class ServiceError(RuntimeError):
    """A server cannot be used or started; the message says why and what to do."""


@dataclass(frozen=True)
class LocalAddress:
    """Where a server of ours listens: a loopback host and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def local_address(url: str, *, default_port: int, what: str) -> LocalAddress:
    """The loopback address of ``url``; raises ServiceError for a host we cannot start a server on."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or default_port
    if host == "localhost":
        return LocalAddress("127.0.0.1", port)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ServiceError(
            f"Nothing answers at {redact(url)} and {host} is not this machine: start {what} there."
        )
    return LocalAddress(host, port)


def redact(url: str) -> str:
    """``url`` without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def port_is_open(address: LocalAddress) -> bool:
    """Something accepts TCP connections at ``address``."""
    try:
        with socket.create_connection((address.host, address.port), timeout=PROBE_TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


# -- Redis --------------------------------------------------------------------------------------------
def redis_answers(url: str) -> bool:
    """A Redis at ``url`` answers PING; raises ServiceError if it answers but refuses our credentials."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=PROBE_TIMEOUT_SECONDS, socket_timeout=PROBE_TIMEOUT_SECONDS
    )
    try:
        return bool(client.ping())
    except (redis.AuthenticationError, redis.ResponseError) as error:
        raise ServiceError(f"Redis at {redact(url)} answers but refuses the request: {error}") from error
    except redis.RedisError:
        return False
    finally:
        client.close()


def redis_command(executable: str, url: str, directory: Path) -> list[str]:
    """A throw-away ``redis-server`` (no persistence) on the address and password of ``url``."""
    address = local_address(url, default_port=6379, what="Redis")
    command = [
        executable,
        "--port", str(address.port),
        "--bind", address.host,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
    ]  # fmt: skip
    password = urlsplit(url).password
    if password:
        command += ["--requirepass", unquote(password)]
    return command


# -- InfluxDB -----------------------------------------------------------------------------------------
def influxdb_answers(url: str) -> bool:
    """An InfluxDB at ``url`` answers ``GET /ping``."""
    try:
        reply = httpx.get(f"{url.rstrip('/')}/ping", timeout=PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError:
        return False
    return reply.status_code == httpx.codes.NO_CONTENT


_INFLUXDB_CONFIG = """\
# Written by scripts/stack.py for the local stack; rewritten on every start.
reporting-disabled = true
bind-address = "{rpc_bind}"

[meta]
  dir = "{directory}/meta"

[data]
  dir = "{directory}/data"
  wal-dir = "{directory}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{http_bind}"
  auth-enabled = false
  log-enabled = false
"""


def influxdb_config(url: str, directory: Path, *, rpc_bind: str) -> str:
    """An InfluxDB 1.x configuration listening only on loopback, data under ``directory``."""
    if urlsplit(url).scheme != "http":
        raise ServiceError(f"Nothing answers at {url}; a local InfluxDB is started only for http:// URLs.")
    http = local_address(url, default_port=8086, what="InfluxDB")
    return _INFLUXDB_CONFIG.format(rpc_bind=rpc_bind, http_bind=http, directory=directory)


def choose_rpc_bind(configured: str | None) -> str:
    """The RPC (backup/restore) address: as configured, else 127.0.0.1:8088, else any free port."""
    if configured:
        return configured
    host, _, port = DEFAULT_INFLUXDB_RPC_BIND.rpartition(":")
    if not port_is_open(LocalAddress(host, int(port))):
        return DEFAULT_INFLUXDB_RPC_BIND
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return f"{host}:{probe.getsockname()[1]}"
