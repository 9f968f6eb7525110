"""The MyRequest apply rule: each event kind, stale and duplicate events, any order."""

from __future__ import annotations

import random
from dataclasses import replace
from functools import reduce
from itertools import permutations

import pytest

from contracts import Event, core, model, target
from mypage_cqrs.view import MyRequest, apply, event_time, merge

T0 = 1_795_000_000_000  # ms
USER, NAME = "test", "TestModel5"


def at(seconds: int) -> int:
    return T0 + seconds * 1000


def m(cls: type[model.ModelRequestEvent], s: int, state: str, **extra: object) -> Event:
    return cls(id=1, timestamp=at(s), state=state, user_id=USER, model_name=NAME, **extra)


def t(cls: type[target.TargetRequestEvent], s: int, state: str, **extra: object) -> Event:
    return cls(
        id=2,
        timestamp=at(s),
        state=state,
        user_id=USER,
        type="segment",
        model_request_id=1,
        **extra,
    )


def progressed(s: int, step: int, total: int = 5) -> Event:
    return core.ModelProgressed(id=9, timestamp=at(s), request_id="1", step=step, total_steps=total)


def changed(s: int, previous: str, state: str, step: int, **extra: object) -> Event:
    progress = 100 if state == "completed" else step * 20
    return m(
        model.StateChanged,
        s,
        state,
        previous_state=previous,
        step=step,
        total_steps=5,
        progress=progress,
        **extra,
    )


REQUESTED = m(model.Requested, 0, "requested")
APPROVED = m(model.Approved, 1, "approved")
STARTED = changed(2, "approved", "inProgress", 1)
STEP2 = progressed(3, 2)
STEP3 = changed(4, "inProgress", "inProgress", 3)
CANCELED = m(model.RequestCanceled, 5, "requestCanceled", previous_state="inProgress", reason="no")
CORE_COMPLETED = core.ModelCompleted(id=9, timestamp=at(6), request_id="1")
REFUSED = m(
    model.CompletionRefused, 7, "requestCanceled", job_id=9, reason="completion refused: canceled"
)
JOB_CANCELED = core.JobCanceled(id=9, timestamp=at(8), type="model", request_id="1", reason="x")


def fold(events: list[Event], row: MyRequest | None = None) -> MyRequest | None:
    return reduce(apply, events, row)


def final(events: list[Event], row: MyRequest | None = None) -> MyRequest:
    folded = fold(events, row)
    assert folded is not None
    return folded


def requested_row(**changes: object) -> MyRequest:
    base = MyRequest(
        id="model-1",
        kind="model",
        request_id=1,
        created_at=event_time(at(0)),
        updated_at=event_time(at(0)),
        created_exact=True,
        user_id=USER,
        name=NAME,
        state="requested",
    )
    return replace(base, **changes)


def test_requested_creates_the_row() -> None:
    assert apply(None, REQUESTED) == requested_row()
    assert requested_row().visible


def test_approved_moves_the_state_and_the_update_time() -> None:
    assert fold([REQUESTED, APPROVED]) == requested_row(
        state="approved", updated_at=event_time(at(1))
    )


def test_state_changed_carries_steps_and_progress() -> None:
    row = fold([REQUESTED, APPROVED, STARTED])
    assert row is not None
    assert (row.state, row.step, row.total_steps, row.progress) == ("inProgress", 1, 5, 20)


def test_core_progress_moves_steps_not_state() -> None:
    row = fold([REQUESTED, APPROVED, STARTED, STEP2])
    assert row is not None
    assert (row.state, row.step, row.progress) == ("inProgress", 2, 40)
    assert row.updated_at == event_time(at(3))


def test_core_progress_first_makes_a_hidden_row_that_the_owner_completes() -> None:
    early = apply(None, STEP2)
    assert early is not None and not early.visible
    assert (early.user_id, early.step, early.created_exact) == (None, 2, False)
    row = fold([REQUESTED, APPROVED, STARTED], early)
    assert row is not None and row.visible
    assert (row.created_at, row.created_exact) == (event_time(at(0)), True)
    assert (row.state, row.step, row.user_id) == ("inProgress", 2, USER)


def test_model_completed_state_changed_is_authoritative() -> None:
    done = changed(6, "inProgress", "completed", 5)
    row = fold([REQUESTED, APPROVED, STARTED, done])
    assert row is not None
    assert (row.state, row.step, row.progress) == ("completed", 5, 100)


def test_core_completion_failure_and_job_cancel_change_nothing() -> None:
    row = fold([REQUESTED, APPROVED, STARTED])
    failed = core.ModelFailed(id=9, timestamp=at(9), request_id="1", reason="boom")
    for event in (CORE_COMPLETED, failed, JOB_CANCELED):
        assert apply(row, event) == row
        assert apply(None, event) is None


def test_cancel_keeps_its_reason_and_a_refused_completion_changes_no_state() -> None:
    canceled = fold([REQUESTED, APPROVED, STARTED, STEP2, CANCELED])
    assert canceled is not None
    assert (canceled.state, canceled.shown_reason, canceled.progress) == (
        "requestCanceled",
        "no",
        40,
    )
    refused = fold([CORE_COMPLETED, REFUSED], canceled)
    assert refused is not None
    assert (refused.state, refused.shown_reason) == ("requestCanceled", "no")
    assert refused.refusal_reason == "completion refused: canceled"


def test_a_refusal_is_the_reason_shown_when_the_cancel_gave_none() -> None:
    bare = m(model.RequestCanceled, 5, "requestCanceled", previous_state="inProgress")
    row = fold([REQUESTED, APPROVED, bare, REFUSED])
    assert row is not None and row.shown_reason == "completion refused: canceled"


@pytest.mark.parametrize(
    ("event", "state", "reason"),
    [
        (m(model.Rejected, 1, "rejected", reason="too big"), "rejected", "too big"),
        (changed(3, "inProgress", "failed", 2, reason="vertica down"), "failed", "vertica down"),
    ],
)
def test_rejection_and_failure_carry_their_reason(event: Event, state: str, reason: str) -> None:
    row = fold([REQUESTED, event])
    assert row is not None and (row.state, row.reason) == (state, reason)


def test_target_lifecycle_and_lms_outcome() -> None:
    requested = t(target.TargetRequested, 0, "requested")
    approved = t(target.TargetApproved, 1, "approved")
    completed = t(target.TargetStateChanged, 3, "completed", previous_state="approved")
    core_done = core.TargetCompleted(id=4, timestamp=at(2), request_id="2")
    sent = core.LmsSent(id=4, timestamp=at(4), request_id="2", midas_send_id="s-1")
    row = fold([requested, approved, core_done])
    assert row is not None and row.state == "approved"
    row = fold([completed, sent], row)
    assert row == MyRequest(
        id="target-2",
        kind="target",
        request_id=2,
        created_at=event_time(at(0)),
        updated_at=event_time(at(4)),
        created_exact=True,
        user_id=USER,
        name="segment",
        model_request_id=1,
        state="completed",
        progress=100,
        lms_status="sent",
    )


def test_lms_sent_wins_over_failed_either_way() -> None:
    failed = core.LmsFailed(id=4, timestamp=at(4), request_id="2", reason="midas 503")
    sent = core.LmsSent(id=4, timestamp=at(5), request_id="2", midas_send_id="s-1")
    assert final([failed]).lms_status == "failed"
    assert fold([failed, sent]) == fold([sent, failed])
    assert final([sent, failed]).lms_status == "sent"


def test_target_cancel_by_compensation_says_why() -> None:
    requested = t(target.TargetRequested, 0, "requested")
    why = "model request 1 was requestCanceled"
    canceled = t(target.TargetCanceled, 2, "canceled", previous_state="requested", reason=why)
    row = fold([requested, canceled])
    assert row is not None and (row.state, row.reason) == ("canceled", why)


@pytest.mark.parametrize(
    "late",
    [REQUESTED, APPROVED, STARTED, progressed(1, 1), STEP2],
    ids=["requested", "approved", "started", "older-step", "same-step"],
)
def test_stale_events_change_nothing(late: Event) -> None:
    row = fold([REQUESTED, APPROVED, STARTED, STEP2, STEP3])
    assert apply(row, late) == row


def test_duplicates_change_nothing() -> None:
    events = [REQUESTED, APPROVED, STARTED, STEP2, STEP3, CANCELED, REFUSED]
    row = fold(events)
    for event in events:
        assert apply(row, event) == row
        assert apply(row, event.model_copy(update={"event_id": "redelivered"})) == row


def test_terminal_state_is_never_reopened() -> None:
    row = fold([REQUESTED, APPROVED, STARTED, CANCELED])
    assert final([APPROVED, STEP3, progressed(9, 5)], row).state == "requestCanceled"


def test_conflicting_terminal_states_resolve_the_same_in_either_order() -> None:
    # One producer never emits both; should it ever, the order still does not matter.
    done = changed(6, "inProgress", "completed", 5)
    assert fold([done, CANCELED]) == fold([CANCELED, done])
    assert final([done, CANCELED]).state == "requestCanceled"


def test_merge_refuses_rows_of_different_requests() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        merge(requested_row(), replace(requested_row(), id="model-2"))


MODEL_EVENTS = [REQUESTED, APPROVED, STARTED, STEP2, CANCELED, CORE_COMPLETED, REFUSED]
TARGET_EVENTS = [
    t(target.TargetRequested, 0, "requested"),
    t(target.TargetApproved, 1, "approved"),
    core.TargetCompleted(id=4, timestamp=at(2), request_id="2"),
    t(target.TargetStateChanged, 3, "completed", previous_state="approved"),
    core.LmsFailed(id=4, timestamp=at(4), request_id="2", reason="midas 503"),
    core.LmsSent(id=4, timestamp=at(5), request_id="2", midas_send_id="s-1"),
]


@pytest.mark.parametrize("events", [MODEL_EVENTS, TARGET_EVENTS], ids=["model", "target"])
def test_every_permutation_gives_the_same_row(events: list[Event]) -> None:
    expected = fold(events)
    assert expected is not None and expected.visible
    for order in permutations(events):
        assert fold(list(order)) == expected, [e.event_type() for e in order]


def test_random_orders_with_duplicates_give_the_same_row() -> None:
    events = [*MODEL_EVENTS, STEP3, JOB_CANCELED, changed(2, "approved", "inProgress", 1)]
    expected = fold(events)
    rng = random.Random(3)
    for _ in range(2000):
        order = events + rng.sample(events, 3)
        rng.shuffle(order)
        assert fold(order) == expected
    assert expected == requested_row(
        state="requestCanceled",
        reason="no",
        refusal_reason="completion refused: canceled",
        step=3,
        total_steps=5,
        progress=60,
        updated_at=event_time(at(7)),
    )


def test_a_re_driven_failure_that_completes_shows_completed_in_any_order() -> None:
    failed = changed(3, "inProgress", "failed", 2, reason="vertica down")
    completed = changed(6, "inProgress", "completed", 5)
    for order in permutations([REQUESTED, APPROVED, failed, completed]):
        row = fold(list(order))
        assert row is not None and (row.state, row.progress) == ("completed", 100)
