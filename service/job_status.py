"""The states a training job moves through and the record the API shows for it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobState(StrEnum):
    PENDING = "PENDING"
    STARTED = "STARTED"
    CONNECTING = "CONNECTING"
    FETCHING_DATA = "FETCHING_DATA"
    VALIDATING_DATA = "VALIDATING_DATA"
    TRAINING_MODEL = "TRAINING_MODEL"
    SAVING_MODEL = "SAVING_MODEL"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    RETRYING = "RETRYING"
    CANCELLED = "CANCELLED"


#: Progress (percent) at which each stage starts; TRAINING_MODEL rises to 89 with trials and epochs.
STAGE_PROGRESS: dict[JobState, int] = {
    JobState.PENDING: 0,
    JobState.STARTED: 0,
    JobState.CONNECTING: 5,
    JobState.FETCHING_DATA: 10,
    JobState.VALIDATING_DATA: 35,
    JobState.TRAINING_MODEL: 50,
    JobState.SAVING_MODEL: 90,
    JobState.SUCCESS: 100,
}
TRAINING_PROGRESS_MAX = 89

FINISHED_STATES = frozenset({JobState.SUCCESS, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset(set(JobState) - FINISHED_STATES)


class JobError(BaseModel):
    type: str = Field(description="DATA, CONNECTION, MODEL, TIMEOUT or INTERNAL")
    message: str


class JobStatus(BaseModel):
    """What ``GET /trainmodel/status/{task_id}`` returns."""

    task_id: str
    meter_id: str
    meter_type: str
    status: JobState
    progress: int = Field(ge=0, le=100)
    message: str
    attempt: int = Field(1, ge=1, description="Delivery attempt of the job (1 = first)")
    started_at: datetime | None = None
    updated_at: datetime
    estimated_completion: datetime | None = None
    result: dict[str, Any] | None = None
    error: JobError | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATES
