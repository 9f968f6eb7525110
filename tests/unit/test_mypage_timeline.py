"""The timeline fold: which entries each event leaves, in what order, whatever the delivery."""

from __future__ import annotations

import random
from typing import Any

from contracts import Event, core, model, target
from mypage_cqrs.timeline import Entry, entries, ordered

T0 = 1_795_000_000_000  # ms


def at(s: float) -> int:
    return T0 + int(s * 1000)


def m(cls: type[Event], s: float, state: str, **kw: Any) -> Event:
    return cls(id=7, timestamp=at(s), state=state, user_id="ana", model_name="Churn", **kw)


def c(cls: type[Event], s: float, request: int = 7, **kw: Any) -> Event:
    return cls(id=31, timestamp=at(s), request_id=str(request), **kw)


def step(s: float, n: int, **kw: Any) -> Event:
    batch = {"batch": n, "batch_offset": (n - 1) * 200, "batch_rows": 200, "total_rows": 1000}
    return c(core.ModelProgressed, s, step=n, total_steps=3, **batch, **kw)


def changed(s: float, previous: str, state: str, n: int) -> Event:
    progress = 100 if state == "completed" else n * 100 // 3
    return m(
        model.StateChanged,
        s,
        state,
        previous_state=previous,
        step=n,
        total_steps=3,
        progress=progress,
    )


def seen(found: list[Entry]) -> list[tuple[str, str | None, str | None, str | None, dict]]:
    return [(e.kind, e.state, e.actor, e.reason, e.detail) for e in found]


def timeline(events: list[Event]) -> list[Entry]:
    found: dict[tuple[str, int], Entry] = {}
    for event in events:
        found.update((e.key, e) for e in entries(event))
    return ordered(found.values())


CHECK = core.Check(outcome="complete", model_state="inProgress", tries=2)

TRAINED = [
    m(model.Requested, 0, "requested"),
    m(model.Approved, 1, "approved", actor="admin"),
    step(2, 1),
    changed(2.1, "approved", "inProgress", 1),
    step(3, 2),
    changed(3.1, "inProgress", "inProgress", 2),
    step(4, 3),
    changed(4.1, "inProgress", "inProgress", 3),
    c(core.ModelCompleted, 4.5, check=CHECK),
    changed(4.6, "inProgress", "completed", 3),
]


def batch(n: int) -> tuple[str, None, str, None, dict]:
    detail = {"jobId": 31, "batch": n, "offset": (n - 1) * 200, "rows": 200, "totalRows": 1000}
    return ("batch", None, "core", None, detail)


def progress(n: int) -> tuple[str, str, str, None, dict]:
    detail = {"jobId": 31, "step": n, "totalSteps": 3, "progress": n * 100 // 3}
    return ("progress", "inProgress", "core", None, detail)


def test_a_trained_model_states_with_actors_batches_steps_and_the_check() -> None:
    assert seen(timeline(TRAINED)) == [
        ("state", "requested", "ana", None, {}),
        ("state", "approved", "admin", None, {"previousState": "requested"}),
        batch(1),
        progress(1),
        (
            "state",
            "inProgress",
            "core",
            None,
            {"previousState": "approved", "step": 1, "totalSteps": 3, "progress": 33},
        ),
        batch(2),
        progress(2),
        batch(3),
        progress(3),
        (
            "check",
            "completed",
            "core",
            None,
            {"jobId": 31, "outcome": "complete", "modelState": "inProgress", "tries": 2},
        ),
        (
            "state",
            "completed",
            "core",
            None,
            {"previousState": "inProgress", "step": 3, "totalSteps": 3, "progress": 100},
        ),
    ]
    first = timeline(TRAINED)[0]
    assert (first.request, first.event_type, first.event_id) == (
        "model-7",
        "Requested",
        TRAINED[0].event_id,
    )


def test_any_order_and_any_repetition_give_the_same_timeline() -> None:
    expected = timeline(TRAINED)
    rng = random.Random(13)
    for _ in range(50):
        delivered = TRAINED + rng.sample(TRAINED, 4)
        rng.shuffle(delivered)
        assert timeline(delivered) == expected


def test_a_step_is_its_batch_then_its_progress_even_within_one_millisecond() -> None:
    same_ms = [step(2, 1), c(core.ModelCompleted, 2, check=CHECK)]
    assert [e.kind for e in timeline(list(reversed(same_ms)))] == ["batch", "progress", "check"]
    assert [e.part for e in entries(same_ms[0])] == [0, 1]


def test_a_cancel_during_training_shows_the_cancellation_and_the_stopped_job() -> None:
    events = [
        *TRAINED[:4],
        m(
            model.RequestCanceled,
            2.5,
            "requestCanceled",
            previous_state="inProgress",
            reason="wrong data",
            actor="ana",
        ),
        c(core.JobCanceled, 2.6, type="model", reason="wrong data"),
    ]
    assert seen(timeline(events))[-2:] == [
        ("state", "requestCanceled", "ana", "wrong data", {"previousState": "inProgress"}),
        ("job", "canceled", "core", "wrong data", {"jobId": 31}),
    ]
    assert not [e for e in timeline(events) if e.state == "completed"]


def test_the_check_finding_the_request_cancelled_and_model_refusing_a_completion() -> None:
    gone = core.Check(outcome="canceled", model_state="requestCanceled", tries=1)
    reason = "model request 7 was cancelled"
    found = entries(c(core.JobCanceled, 5, type="model", reason=reason, check=gone))
    assert seen(found) == [
        (
            "check",
            "canceled",
            "core",
            reason,
            {"jobId": 31, "outcome": "canceled", "modelState": "requestCanceled", "tries": 1},
        )
    ]
    refusal = "completion refused: model request 7 is requestCanceled"
    refused = m(model.CompletionRefused, 6, "requestCanceled", job_id=31, reason=refusal)
    assert seen(entries(refused)) == [
        (
            "check",
            "requestCanceled",
            "model",
            refusal,
            {"jobId": 31, "outcome": "completionRefused"},
        )
    ]


def tg(cls: type[Event], s: float, state: str, **kw: Any) -> Event:
    return cls(
        id=4, timestamp=at(s), state=state, user_id="ana", type="vip", model_request_id=7, **kw
    )


def test_a_target_extracted_and_sent_with_midas_send_id() -> None:
    events = [
        tg(target.TargetRequested, 10, "requested"),
        tg(target.TargetApproved, 11, "approved", actor="admin"),
        c(core.TargetCompleted, 12, 4),
        tg(target.TargetStateChanged, 12.1, "completed", previous_state="approved"),
        c(core.LmsSent, 12.2, 4, midas_send_id="midas-42"),
    ]
    assert seen(timeline(events)) == [
        ("state", "requested", "ana", None, {"modelRequestId": 7}),
        ("state", "approved", "admin", None, {"previousState": "requested"}),
        ("job", "targetCompleted", "core", None, {"jobId": 31}),
        ("state", "completed", "core", None, {"previousState": "approved"}),
        ("lms", "sent", "core", None, {"jobId": 31, "midasSendId": "midas-42"}),
    ]
    assert {e.request for e in timeline(events)} == {"target-4"}
    failed = c(core.LmsFailed, 13, 4, reason="midas answered 503")
    assert seen(entries(failed)) == [("lms", "failed", "core", "midas answered 503", {"jobId": 31})]


def test_a_target_cancelled_by_compensation_names_target_as_actor() -> None:
    why = "model request 7 was requestCanceled"
    event = tg(
        target.TargetCanceled, 5, "canceled", previous_state="requested", reason=why, actor="target"
    )
    assert seen(entries(event)) == [
        ("state", "canceled", "target", why, {"previousState": "requested"})
    ]


def test_events_written_before_the_extensions_still_make_entries() -> None:
    old_approved = model.Approved.model_validate(
        {"id": 7, "timestamp": at(1), "state": "approved", "userId": "ana", "modelName": "Churn"}
    )
    old_step = core.ModelProgressed.model_validate(
        {"id": 31, "timestamp": at(2), "requestId": "7", "step": 1, "totalSteps": 3}
    )
    old_completed = core.ModelCompleted.model_validate(
        {"id": 31, "timestamp": at(3), "requestId": "7"}
    )
    assert seen(timeline([old_approved, old_step, old_completed])) == [
        ("state", "approved", None, None, {"previousState": "requested"}),
        progress(1),
        ("check", "completed", "core", None, {"jobId": 31, "outcome": "complete"}),
    ]


def test_unset_extensions_keep_the_seed_shape_and_set_ones_travel() -> None:
    plain = model.Approved(id=1, state="approved", user_id="u", model_name="m")
    assert "actor" not in plain.to_value()
    by = model.Approved(id=1, state="approved", user_id="u", model_name="m", actor="admin")
    assert by.to_value()["actor"] == "admin"
    done = c(core.ModelCompleted, 1, check=CHECK).to_value()
    assert done["check"] == {"outcome": "complete", "modelState": "inProgress", "tries": 2}
    assert core.ModelCompleted.model_validate(done).check == CHECK


def test_a_step_repeated_in_state_and_a_foreign_request_id_leave_nothing() -> None:
    assert entries(changed(3, "inProgress", "inProgress", 2)) == []
    assert (
        entries(c(core.LmsSent, 1, midas_send_id="x").model_copy(update={"request_id": "x"})) == []
    )
