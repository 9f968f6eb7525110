"""core's job types, registered in one place: a new type is a module in this package
(core.jobs.base.JobType), a line in ``Kind`` and a line here.

``EVENTS`` is what the Job aggregate reads (what a job of each kind announces);
``JobTypes`` is what the runner reads (each type with its adapters).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from core.artifact import Artifacts
from core.jobs.base import JobEvents, JobType, Kind, Pace
from core.jobs.cancellation_check import CancellationCheck
from core.jobs.extraction import Extraction
from core.jobs.lms_send import LmsSend, LmsSender
from core.jobs.training import Training, TrainingData

TYPES: tuple[type[JobType], ...] = (Training, Extraction, LmsSend)
EVENTS: dict[Kind, JobEvents] = {t.kind: t.events for t in TYPES}
RUNS_STEPS: dict[Kind, bool] = {t.kind: t.runs_steps for t in TYPES}


class JobTypes:
    """Every job type with its adapters, by kind."""

    def __init__(
        self,
        *,
        vertica: TrainingData,
        midas: LmsSender,
        check: CancellationCheck,
        batch_size: int,
        step_duration_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        artifacts: Artifacts | None = None,
    ) -> None:
        pace = Pace(step_duration_s, sleep)
        types: tuple[JobType, ...] = (
            Training(vertica, check, pace, batch_size, artifacts),
            Extraction(pace),
            LmsSend(midas),
        )
        self._by_kind: dict[Kind, JobType] = {t.kind: t for t in types}

    def __getitem__(self, kind: Kind) -> JobType:
        return self._by_kind[kind]
