"""The saga's metrics: what each transition counts, and that it counts only once the
unit of work committed (a consumer's retried transaction is not counted twice)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from contracts import Event
from contracts import model as model_events
from contracts.core import ModelCompleted, ModelProgressed, TargetCompleted
from core import handlers as core_handlers
from core.domain import State as JobState
from model import handlers as model_handlers
from model.domain import State as ModelState
from servicekit.metrics import record_saga_transition
from target import handlers as target_handlers
from target.domain import ModelRecord
from target.domain import State as TargetState
from tests.unit import test_core_handlers as core_fakes
from tests.unit import test_model_handlers as model_fakes
from tests.unit import test_target_handlers as target_fakes

Sample = tuple[str, dict[str, str]]


def stage(flow: str, name: str) -> Sample:
    return "saga_stage_duration_seconds_count", {"flow": flow, "stage": name}


def outcome(flow: str, name: str) -> Sample:
    return "saga_outcomes_total", {"flow": flow, "outcome": name}


def cancellation(flow: str, from_state: str) -> Sample:
    return "saga_cancellations_total", {"flow": flow, "from_state": from_state}


def compensation(service: str, kind: str) -> Sample:
    return "saga_compensations_total", {"service": service, "kind": kind}


def job(kind: str, job_outcome: str) -> Sample:
    return "core_jobs_total", {"kind": kind, "outcome": job_outcome}


class Deltas:
    """How much each sample of the shared registry grew since the last look."""

    def __init__(self, *samples: Sample) -> None:
        self.samples = samples
        self.last = self._now()

    def _now(self) -> list[float]:
        return [REGISTRY.get_sample_value(name, labels) or 0.0 for name, labels in self.samples]

    def __call__(self) -> list[float]:
        now = self._now()
        grown, self.last = [b - a for a, b in zip(self.last, now, strict=True)], now
        return grown


# The handlers' own fakes, whose after_commit (tests/unit/fakes.py) runs callbacks
# only after a commit that succeeds.
ModelUow = model_fakes.FakeUnitOfWork
TargetUow = target_fakes.FakeUnitOfWork
CoreUow = core_fakes.FakeUnitOfWork


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("flow", "previous", "state", "counted"),
    [
        ("model", "requested", "approved", [stage("model", "approved")]),
        (
            "model",
            "inProgress",
            "completed",
            [outcome("model", "completed"), stage("model", "completed")],
        ),
        (
            "model",
            "approved",
            "requestCanceled",
            [outcome("model", "canceled"), cancellation("model", "approved")],
        ),
        ("model", "inProgress", "failed", [outcome("model", "failed")]),
        ("target", "requested", "rejected", [outcome("target", "rejected")]),
        (
            "target",
            "requested",
            "canceled",
            [outcome("target", "canceled"), cancellation("target", "requested")],
        ),
        (
            "target",
            "approved",
            "completed",
            [outcome("target", "completed"), stage("target", "completed")],
        ),
        ("model", "approved", "inProgress", []),
        ("model", "inProgress", "inProgress", []),
        ("model", "completed", "completed", []),
    ],
)
def test_each_transition_counts_what_it_means(
    flow: str, previous: str, state: str, counted: list[Sample]
) -> None:
    everything = [
        *(stage(f, s) for f in ("model", "target") for s in ("approved", "completed")),
        *(outcome(f, o) for f in ("model", "target") for o in ("completed", "canceled")),
        *(outcome(f, o) for f in ("model", "target") for o in ("failed", "rejected")),
        *(cancellation(f, s) for f in ("model", "target") for s in ("requested", "approved")),
    ]
    deltas = Deltas(*everything)
    record_saga_transition(flow, previous, state, NOW - timedelta(minutes=5), NOW)
    assert deltas() == [1.0 if sample in counted else 0.0 for sample in everything]


def test_a_stage_observes_the_time_since_the_request_was_created() -> None:
    total = ("saga_stage_duration_seconds_sum", {"flow": "target", "stage": "approved"})
    under_10m = (
        "saga_stage_duration_seconds_bucket",
        {"flow": "target", "stage": "approved", "le": "600.0"},
    )
    under_5m = (
        "saga_stage_duration_seconds_bucket",
        {"flow": "target", "stage": "approved", "le": "300.0"},
    )
    deltas = Deltas(total, under_10m, under_5m)
    record_saga_transition("target", "requested", "approved", NOW - timedelta(minutes=7), NOW)
    assert deltas() == [420.0, 1.0, 0.0]
    # A clock that went backwards counts as no time, not as negative time.
    record_saga_transition("target", "requested", "approved", NOW + timedelta(seconds=3), NOW)
    assert deltas() == [0.0, 1.0, 1.0]


async def test_model_counts_approval_and_completion_once_committed() -> None:
    uow = ModelUow()
    deltas = Deltas(stage("model", "approved"), stage("model", "completed"))
    lost = await model_handlers.request_model(uow, "test", "M")
    uow.fail_commit = True  # (the fake keeps the change; a database would not)
    with pytest.raises(ConnectionError):
        await model_handlers.approve(uow, lost.id)
    assert deltas() == [0.0, 0.0]
    uow.fail_commit = False
    req = await model_handlers.request_model(uow, "test", "M")
    await model_handlers.approve(uow, req.id)
    assert deltas() == [1.0, 0.0]

    progressed = ModelProgressed(id=9, request_id=str(req.id), step=1, total_steps=1)
    async with uow:
        await model_handlers.on_progress(uow, progressed)
        await uow.commit()
    async with uow:  # what the consumer does: handler, then commit
        await model_handlers.on_completed(uow, ModelCompleted(id=9, request_id=str(req.id)))
        assert deltas() == [0.0, 0.0]
        await uow.commit()
    assert deltas() == [0.0, 1.0]


async def test_model_counts_a_refused_late_completion_as_a_compensation() -> None:
    uow = ModelUow()
    req = await model_handlers.request_model(uow, "test", "M")
    await model_handlers.approve(uow, req.id)
    deltas = Deltas(
        compensation("model", "completion_refused"),
        cancellation("model", "approved"),
        outcome("model", "completed"),
        (
            "model_core_events_refused_total",
            {"event": "ModelCompleted", "state": "requestCanceled"},
        ),
    )
    await model_handlers.cancel(uow, req.id)
    assert deltas() == [0.0, 1.0, 0.0, 0.0]
    late = ModelCompleted(id=9, request_id=str(req.id))
    async with uow:  # the first attempt's transaction fails: nothing counted
        await model_handlers.on_completed(uow, late)
    async with uow:
        await model_handlers.on_completed(uow, late)
        await uow.commit()
    assert deltas() == [1.0, 0.0, 0.0, 1.0]
    assert uow.requests.rows[req.id].state == ModelState.CANCELED


def model_event(kind: type[model_events.ModelRequestEvent], state: str, **extra: object) -> Event:
    return kind(id=1, state=state, user_id="test", model_name="M", **extra)


async def test_target_counts_the_targets_its_compensation_cancels() -> None:
    uow = TargetUow()
    uow.models.rows[1] = ModelRecord(1, "completed")
    first = (await target_handlers.request_target(uow, "a", "t", 1, any_model=True)).target.id
    second = (await target_handlers.request_target(uow, "b", "t", 1, any_model=True)).target.id
    deltas = Deltas(
        stage("target", "approved"),
        compensation("target", "targets_canceled"),
        cancellation("target", "requested"),
        cancellation("target", "approved"),
        outcome("target", "canceled"),
    )
    await target_handlers.approve(uow, second)
    assert deltas() == [1.0, 0.0, 0.0, 0.0, 0.0]
    uow.models.rows[1] = ModelRecord(1, "inProgress")  # to see compensation alone
    canceled = model_event(
        model_events.RequestCanceled, "requestCanceled", previous_state="inProgress"
    )
    async with uow:
        await target_handlers.on_model_event(uow, canceled)
        assert deltas() == [0.0] * 5
        await uow.commit()
    assert deltas() == [0.0, 2.0, 1.0, 1.0, 2.0]
    assert {uow.targets.rows[i].state for i in (first, second)} == {TargetState.CANCELED}


async def test_target_counts_its_completion() -> None:
    uow = TargetUow()
    uow.models.rows[1] = ModelRecord(1, "completed")
    id = (await target_handlers.request_target(uow, "a", "t", 1, any_model=True)).target.id
    await target_handlers.approve(uow, id)
    deltas = Deltas(stage("target", "completed"), outcome("target", "completed"))
    async with uow:
        await target_handlers.on_completed(uow, TargetCompleted(id=5, request_id=str(id)))
        await uow.commit()
    assert deltas() == [1.0, 1.0]


async def test_core_counts_a_queued_job_it_cancels_and_a_job_it_compensates() -> None:
    uow = CoreUow()
    deltas = Deltas(
        job("model", "enqueued"),
        job("model", "canceled"),
        compensation("core", "job_canceled"),
        job("model", "compensated"),
        compensation("core", "job_compensated"),
    )
    await core_fakes.deliver(uow, core_fakes.approved(15))
    assert deltas() == [1.0, 0.0, 0.0, 0.0, 0.0]
    async with uow:  # handled, not committed yet: nothing counted
        await core_handlers.on_request_canceled(uow, core_fakes.canceled(15))
        assert deltas() == [0.0] * 5
        await uow.commit()
    assert deltas() == [0.0, 1.0, 1.0, 0.0, 0.0]
    await core_fakes.deliver(uow, core_fakes.canceled(15))
    assert deltas() == [0.0] * 5  # a second cancel of an ended job counts nothing

    # A running job is cancelled by its runner at its next write (counted there).
    await core_fakes.deliver(uow, core_fakes.approved(16))
    [running] = [j for j in uow.jobs.rows.values() if j.request_id == "16"]
    running.claim("w", running.created_at, 10)
    await core_fakes.deliver(uow, core_fakes.canceled(16))
    assert deltas() == [1.0, 0.0, 0.0, 0.0, 0.0]

    running.cancel_requested = False
    running.complete(running.created_at)
    refused = model_events.CompletionRefused(
        id=16,
        state="requestCanceled",
        user_id="test",
        model_name="M",
        job_id=running.id,
        reason="cancelled meanwhile",
    )
    await core_fakes.deliver(uow, refused)
    assert running.state == JobState.CANCELED
    assert deltas() == [0.0, 0.0, 0.0, 1.0, 1.0]
