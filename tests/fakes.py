"""In-memory stand-ins for the services, for unit tests of one function or pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from forecasting.errors import SourceUnavailableError
from forecasting.training_job import Stage

PROJECT_DIR = Path(__file__).resolve().parents[1]
METERS_DIR = PROJECT_DIR / "data" / "meters"


def read_meter(name: str) -> pd.DataFrame:
    """A shipped sample meter as a reader would return it (UTC index, float ``value``)."""
    frame = pd.read_csv(METERS_DIR / f"{name}.csv", parse_dates=["timestamp"], index_col="timestamp")
    return frame[["value"]].astype(float)


@dataclass
class FrameHistory:
    """A MeterHistory over frames held in memory, keyed by (meter_id, meter_type)."""

    frames: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    reachable: bool = True

    def fetch(
        self, meter_id: str, meter_type: str, *, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        if not self.reachable:
            raise SourceUnavailableError("fake store is down")
        frame = self.frames.get(
            (meter_id, meter_type), pd.DataFrame({"value": []}, index=pd.DatetimeIndex([], tz="UTC"))
        )
        if start is not None:
            frame = frame[frame.index >= pd.Timestamp(start)]
        if end is not None:
            frame = frame[frame.index < pd.Timestamp(end)]
        return frame

    def ping(self) -> None:
        if not self.reachable:
            raise SourceUnavailableError("fake store is down")

    def close(self) -> None:
        pass


@dataclass
class RecordedProgress:
    """A JobProgress that keeps every report."""

    stages: list[Stage] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)

    def stage(self, stage: Stage, message: str) -> None:
        self.stages.append(stage)

    def training(self, fraction: float, message: str) -> None:
        self.fractions.append(fraction)
