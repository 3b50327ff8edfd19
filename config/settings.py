"""One settings object for every process of the service.

Values come, in rising priority, from the defaults below, ``config/influxdb_config.json``
(the ``influxdb`` section only, kept compatible with the system this replaces), a ``.env``
file and the environment. Nested fields use ``__``: ``INFLUXDB__URL``, ``TRAINING__MAX_TRIALS``.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INFLUX_CONFIG = PROJECT_ROOT / "config" / "influxdb_config.json"

DEFAULT_METER_TYPES = ["electricity", "gas", "water", "heat", "chilledwater", "steam", "hotwater"]


class InfluxSettings(BaseModel):
    """Where meter histories live and how they are laid out."""

    version: int = Field(1, ge=1, le=2, description="1: InfluxQL over /query (1.x, 2.x compat, 3.x); 2: Flux")
    url: str = "http://127.0.0.1:8086"
    # 1.x / InfluxQL
    database: str = "energy"
    username: str = ""
    password: SecretStr = SecretStr("")
    # 2.x / Flux
    token: SecretStr = SecretStr("")
    org: str = ""
    bucket: str = "energy"
    # Schema of the system this replaces.
    measurement: str = "energy_consumption"
    meter_id_tag: str = "meter_id"
    meter_type_tag: str = "meter_type"
    field: str = "consumption"
    temperature_field: str = "temperature"
    timeout_seconds: float = Field(30.0, gt=0, description="Per network read")
    chunk_size: int = Field(10_000, gt=0, description="Rows per chunk of a chunked 1.x query")
    history_days: int | None = Field(
        None, gt=0, description="Read at most this many days back; None reads the whole history"
    )


class TrainingSettings(BaseModel):
    """Budget and shape of one training job."""

    horizon_hours: int = Field(24, ge=1, le=168)
    max_trials: int = Field(2, ge=1, description="keras-tuner trials per job")
    epochs: int = Field(40, ge=1)
    patience: int = Field(4, ge=1, description="Early-stopping patience in epochs")
    batch_size: int = Field(256, ge=8)
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    backtest_weeks: int = Field(4, ge=1, description="Rolling-origin day-ahead backtest window")
    min_history_days: int = Field(28, ge=8, description="Usable history needed to train")
    max_train_days: int | None = Field(730, ge=28, description="Train on at most this many most recent days")
    time_limit_seconds: int = Field(1800, ge=10, description="Hard limit per job (TIMEOUT)")
    max_retries: int = Field(3, ge=0, description="Redeliveries for errors that may pass")
    retry_min_backoff_seconds: float = Field(
        2.0, gt=0, description="Delay before the first retry of an error that may pass; doubles each time"
    )
    retry_max_backoff_seconds: float = Field(60.0, gt=0, description="Longest delay between retries")
    seed: int = 42
    challengers: list[Literal["mstl"]] = Field(
        default_factory=lambda: ["mstl"],
        description="Models backtested next to the network on the same window; the best becomes the version's kind",
    )
    mstl_window_days: int = Field(56, ge=15, description="Trailing days the MSTL challenger refits on")
    use_temperature: bool = Field(
        True,
        description="Feed the network the last day of the meter's temperature field when it covers 90% of the data",
    )


class CleaningSettings(BaseModel):
    """How raw meter readings become a regular consumption series."""

    timezone: str = Field("UTC", description="Meter's local zone for calendar features")
    holiday_country: str | None = Field("US", description="holidays package country code")
    max_fill_gap_intervals: int = Field(3, ge=0, description="Gaps up to this long are interpolated")
    cumulative_meter_types: list[str] = Field(
        default_factory=list,
        description="Meter types stored as running totals (registers); monotone series are detected too",
    )
    export_meter_types: list[str] = Field(
        default_factory=lambda: ["electricity"],
        description="Meter types whose negative values are real (net load with export)",
    )
    max_interval_value: float | None = Field(
        None, gt=0, description="Physical cap per interval; larger values are excluded"
    )
    flat_run_hours: int = Field(24, ge=2, description="Report runs of identical values this long")


class WorkerSettings(BaseModel):
    """How many worker processes run and how each uses the CPU."""

    processes: int = Field(1, ge=1)
    threads: int = Field(1, ge=1, description="Training wants one thread per process")
    queue: str = "training"
    tf_threads: int = Field(
        0,
        ge=0,
        description="TensorFlow intra-op threads per process; 0 = the cores shared among the processes",
    )
    heartbeat_timeout_seconds: int = Field(
        20, ge=5, description="A worker silent this long is dead; its unacked jobs are redelivered"
    )
    maintenance_chance: int = Field(
        100_000, ge=1, le=1_000_000, description="Broker calls per million that requeue dead workers' jobs"
    )
    max_jobs_per_process: int = Field(
        20, ge=1, description="Recycle a worker process after this many jobs (bounds memory)"
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Interface the workers' Prometheus metrics listen on (0.0.0.0 for a remote scraper)",
    )
    metrics_port: int = Field(
        9191, ge=0, le=65535, description="Port of the workers' Prometheus metrics (one per host); 0 = off"
    )

    @property
    def tensorflow_threads(self) -> int:
        """Intra-op threads for each worker process's TensorFlow.

        TensorFlow's default is one thread per core in *every* process: two processes training at once
        on two cores then run four busy threads that preempt each other. Unset, the cores this
        process may run on are shared out among the worker processes (at least one each).
        """
        if self.tf_threads:
            return self.tf_threads
        return max(1, len(os.sched_getaffinity(0)) // self.processes)


class Settings(BaseSettings):
    """Everything configurable, read once per process via :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
    )

    redis_url: str = "redis://localhost:6379/0"
    debug: bool = False
    log_format: Literal["console", "json"] = "console"
    log_dir: Path = PROJECT_ROOT / "logs"
    models_dir: Path = PROJECT_ROOT / "models"
    status_ttl_seconds: int = Field(7 * 24 * 3600, gt=0, description="How long job statuses live")
    redis_timeout_seconds: float = Field(2.0, gt=0)
    api_key: SecretStr | None = None
    max_request_bytes: int = Field(
        64 * 1024, gt=0, description="Largest request body the API reads; a larger one gets 413"
    )
    request_body_timeout_seconds: float = Field(
        10.0, gt=0, description="A request body not complete after this long gets 408 (slow clients)"
    )
    meter_types: list[str] = Field(default_factory=lambda: list(DEFAULT_METER_TYPES))
    influxdb_config_file: Path = DEFAULT_INFLUX_CONFIG
    influxdb: InfluxSettings = Field(default_factory=InfluxSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    cleaning: CleaningSettings = Field(default_factory=CleaningSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)

    @field_validator("meter_types")
    @classmethod
    def _lowercase_types(cls, value: list[str]) -> list[str]:
        return [meter_type.strip().lower() for meter_type in value if meter_type.strip()]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            InfluxJsonSource(settings_cls),
            file_secret_settings,
        )


class InfluxJsonSource(PydanticBaseSettingsSource):
    """Reads the ``influxdb`` section from ``config/influxdb_config.json``.

    The file is optional; its path is the ``influxdb_config_file`` setting (``INFLUXDB_CONFIG_FILE``
    in the environment or ``.env``, or a keyword argument), so a deployment can keep credentials
    outside the checkout. This source runs after those, and pydantic-settings hands it what they found.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = Path(self.current_state.get("influxdb_config_file") or DEFAULT_INFLUX_CONFIG)
        if not path.is_file():
            return {}
        content = json.loads(path.read_text(encoding="utf-8"))
        content = {key: value for key, value in content.items() if not key.startswith("_")}
        return {"influxdb": content}


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return Settings()
