from __future__ import annotations

import os
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from servicekit.settings import ServiceSettings


class CoreSettings(ServiceSettings):
    service_name: str = "core"
    port: int = Field(8084, validation_alias="CORE_PORT")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:55432/core", validation_alias="CORE_DATABASE_URL"
    )

    # The queue and its workers.
    worker_concurrency: int = Field(4, ge=1, validation_alias="CORE_WORKER_CONCURRENCY")
    poll_interval_s: float = Field(0.3, gt=0, validation_alias="CORE_POLL_INTERVAL_S")
    lease_s: float = Field(10.0, gt=0, validation_alias="CORE_LEASE_S")
    job_max_attempts: int = Field(3, ge=1, validation_alias="CORE_JOB_MAX_ATTEMPTS")
    job_backoff_initial_s: float = Field(1.0, ge=0, validation_alias="CORE_JOB_BACKOFF_INITIAL_S")
    job_backoff_max_s: float = Field(30.0, ge=0, validation_alias="CORE_JOB_BACKOFF_MAX_S")

    # Where core keeps its files: trained models' cards under models/ (/data in containers).
    data_dir: Path = Field(
        default_factory=lambda: _local_data_dir(), validation_alias="CORE_DATA_DIR"
    )

    # What a job does.
    training_steps: int = Field(5, ge=1, validation_alias="CORE_TRAINING_STEPS")
    step_duration_s: float = Field(0.4, ge=0, validation_alias="CORE_STEP_DURATION_S")
    extraction_steps: int = Field(3, ge=1, validation_alias="CORE_EXTRACTION_STEPS")

    # Vertica (training data).
    vertica_url: str = Field("http://127.0.0.1:8090/vertica", validation_alias="VERTICA_URL")
    vertica_batch_size: int = Field(200, ge=1, validation_alias="VERTICA_BATCH_SIZE")
    vertica_timeout_s: float = Field(5.0, gt=0, validation_alias="VERTICA_TIMEOUT_S")

    # The cancellation check against the model service (core.jobs.cancellation_check).
    model_service_url: str = Field("http://127.0.0.1:8082", validation_alias="MODEL_SERVICE_URL")
    check_timeout_s: float = Field(2.0, gt=0, validation_alias="CORE_CHECK_TIMEOUT_S")
    check_backoff_initial_s: float = Field(
        0.5, ge=0, validation_alias="CORE_CHECK_BACKOFF_INITIAL_S"
    )
    check_backoff_max_s: float = Field(5.0, ge=0, validation_alias="CORE_CHECK_BACKOFF_MAX_S")
    breaker_failures: int = Field(5, ge=1, validation_alias="CORE_BREAKER_FAILURES")
    breaker_reset_s: float = Field(10.0, gt=0, validation_alias="CORE_BREAKER_RESET_S")

    # MIDAS (LMS bulk sends).
    midas_url: str = Field("http://127.0.0.1:8090/midas", validation_alias="MIDAS_URL")
    midas_timeout_s: float = Field(5.0, gt=0, validation_alias="MIDAS_TIMEOUT_S")
    lms_max_attempts: int = Field(5, ge=1, validation_alias="CORE_LMS_MAX_ATTEMPTS")

    @model_validator(mode="after")
    def _lease_outlives_the_longest_wait(self) -> Self:
        """A worker renews its lease between calls; a lease shorter than one call plus the
        wait before it would let another worker take a job that is still running."""
        longest = max(
            self.vertica_timeout_s + self.step_duration_s,
            self.midas_timeout_s,
            self.check_timeout_s + self.check_backoff_max_s,
        )
        if self.lease_s <= longest:
            raise ValueError(
                f"CORE_LEASE_S ({self.lease_s}) must exceed the longest wait between lease "
                f"renewals ({longest}: a Vertica call plus a step, a MIDAS call, or a model "
                "check plus its backoff)"
            )
        return self


def _local_data_dir() -> Path:
    """Locally: ``core/`` in the data directory ``nocode up`` uses (``NOCODE_DATA_DIR``)."""
    local = os.environ.get("NOCODE_DATA_DIR")
    return (Path(local) if local else Path(__file__).resolve().parent.parent / ".nocode") / "core"
