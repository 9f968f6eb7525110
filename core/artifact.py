"""A trained model's artifact: its model card, a JSON file on core's data volume.

When a model job completes, core writes ``<CORE_DATA_DIR>/models/<job id>.json``: the
request, the training parameters, the Vertica batches each step read, and the metrics
per step. The steps come from the job's own ModelProgressed events in core's outbox
(its event log), so a job resumed by another worker after a crash still has them all.
The file is written in the completing transaction, before its commit, to a temporary
name then renamed: a reader never sees half a card, and a commit that fails is followed
by an attempt that writes it again. ``GET /cores/{id}/artifact`` serves it while the
job is completed (a completion later refused by model is no model).

Training is simulated: ``loss`` is a stand-in that falls as the model sees more rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from contracts.core import ModelProgressed
from core.tables import outbox

if TYPE_CHECKING:
    from core.domain import Job
    from core.repository import CoreUnitOfWork

CARD_FORMAT = "nocode.model-card/v1"


class Artifacts:
    def __init__(self, directory: Path, parameters: dict[str, Any]) -> None:
        self.directory = directory
        self.parameters = parameters

    def path(self, job_id: int) -> Path:
        return self.directory / f"{int(job_id)}.json"

    async def write(self, job: Job, uow: CoreUnitOfWork, now: datetime) -> Path:
        """Write ``job``'s model card from what its transaction sees; returns the path."""
        progressed = await _progress_of(job, uow)
        card = model_card(job, progressed, self.parameters, now)
        path = self.path(job.id)
        await asyncio.to_thread(_write_atomically, path, card)
        return path

    def read(self, job_id: int) -> bytes | None:
        try:
            return self.path(job_id).read_bytes()
        except FileNotFoundError:
            return None


async def _progress_of(job: Job, uow: CoreUnitOfWork) -> list[dict[str, Any]]:
    query = (
        select(outbox.c.payload, outbox.c.occurred_at)
        .where(outbox.c.ce_type == ModelProgressed.ce_type(), outbox.c.key == job.request_id)
        .order_by(outbox.c.id)
    )
    rows = (await uow.session.execute(query)).all()
    return [{**payload, "_at": at} for payload, at in rows if payload.get("id") == job.id]


def model_card(
    job: Job, progressed: list[dict[str, Any]], parameters: dict[str, Any], now: datetime
) -> dict[str, Any]:
    by_step: dict[int, dict[str, Any]] = {}
    for event in progressed:  # a retried attempt reports a step again: the last one counts
        by_step[int(event["step"])] = event
    steps: list[dict[str, Any]] = []
    seen = 0
    previous = job.started_at
    for number in sorted(by_step):
        event = by_step[number]
        rows = int(event.get("batchRows") or 0)
        total = int(event.get("totalRows") or 0)
        seen += rows
        at: datetime = event["_at"]
        steps.append(
            {
                "step": number,
                "at": at.isoformat(),
                "durationS": round((at - previous).total_seconds(), 3) if previous else None,
                "vertica": {
                    "batch": event.get("batch"),
                    "offset": event.get("batchOffset"),
                    "rows": rows,
                    "totalRows": total,
                },
                "metrics": {"rowsSeen": seen, "loss": _loss(seen, total)},
            }
        )
        previous = at
    return {
        "format": CARD_FORMAT,
        "jobId": job.id,
        "request": {
            "modelRequestId": job.request_id,
            "modelName": job.name,
            "userId": job.user_id,
        },
        "parameters": {**parameters, "trainingSteps": job.total_steps},
        "training": {
            "startedAt": job.started_at.isoformat() if job.started_at else None,
            "completedAt": now.isoformat(),
            "attempts": job.attempts,
            "simulated": True,
        },
        "verticaBatches": [s["vertica"] for s in steps],
        "steps": steps,
        "metrics": steps[-1]["metrics"] if steps else {},
    }


def _loss(rows_seen: int, total_rows: int) -> float:
    return round(1.0 / (1.0 + rows_seen / max(total_rows, 1)), 4)


def _write_atomically(path: Path, card: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(card, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes it 0600; the card is readable like a log
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
