"""The ModelRequest state machine: every legal and every illegal transition."""

from __future__ import annotations

import itertools

import pytest

from contracts import model as events
from model.domain import LIFECYCLE, Action, ModelRequest, State
from servicekit.statemachine import IllegalTransition

LEGAL = {
    (State.REQUESTED, Action.APPROVE): State.APPROVED,
    (State.REQUESTED, Action.REJECT): State.REJECTED,
    (State.REQUESTED, Action.CANCEL): State.CANCELED,
    (State.APPROVED, Action.CANCEL): State.CANCELED,
    (State.IN_PROGRESS, Action.CANCEL): State.CANCELED,
    (State.APPROVED, Action.START): State.IN_PROGRESS,
    (State.IN_PROGRESS, Action.PROGRESS): State.IN_PROGRESS,
    (State.IN_PROGRESS, Action.COMPLETE): State.COMPLETED,
    (State.APPROVED, Action.FAIL): State.FAILED,
    (State.IN_PROGRESS, Action.FAIL): State.FAILED,
    (State.FAILED, Action.PROGRESS): State.IN_PROGRESS,
    (State.FAILED, Action.COMPLETE): State.COMPLETED,
}
ALL_PAIRS = list(itertools.product(State, Action))


@pytest.mark.parametrize(("state", "action"), list(LEGAL))
def test_legal_transition(state: State, action: Action) -> None:
    assert LIFECYCLE.next(7, state, action) == LEGAL[(state, action)]


@pytest.mark.parametrize(("state", "action"), [p for p in ALL_PAIRS if p not in LEGAL])
def test_illegal_transition_names_state_and_action(state: State, action: Action) -> None:
    with pytest.raises(IllegalTransition) as refused:
        LIFECYCLE.next(7, state, action)
    assert str(refused.value) == f"cannot {action} model request 7: it is {state}"
    assert refused.value.state == state and refused.value.action == action


def in_state(state: State) -> ModelRequest:
    req = ModelRequest(id=3, user_id="test", model_name="TestModel10", state=state)
    if state == State.IN_PROGRESS:
        req.step, req.total_steps = 1, 4
    return req


def test_request_announces_requested_in_the_seed_shape() -> None:
    req = ModelRequest.request(15, "test", "TestModel5")
    [event] = req.pull_events()
    value = event.to_value()
    assert list(value) == ["eventType", "timestamp", "id", "state", "userId", "modelName"]
    assert value["eventType"] == "Requested" and value["id"] == 15
    assert (value["state"], value["userId"], value["modelName"]) == (
        "requested",
        "test",
        "TestModel5",
    )
    assert req.pull_events() == []


@pytest.mark.parametrize(
    ("act", "event_type", "state"),
    [
        (lambda r: r.approve(), events.Approved, State.APPROVED),
        (lambda r: r.reject("no budget"), events.Rejected, State.REJECTED),
        (lambda r: r.cancel("changed my mind"), events.RequestCanceled, State.CANCELED),
    ],
)
def test_admin_and_user_actions_announce_their_event(act, event_type, state) -> None:  # type: ignore[no-untyped-def]
    req = in_state(State.REQUESTED)
    act(req)
    [event] = req.pull_events()
    assert type(event) is event_type
    assert req.state == state and event.state == state.value


def test_reject_keeps_the_reason() -> None:
    req = in_state(State.REQUESTED)
    req.reject("no budget")
    [event] = req.pull_events()
    assert req.reason == "no budget" and event.reason == "no budget"


def test_training_announces_its_states_and_shows_each_step() -> None:
    req = in_state(State.APPROVED)
    req.record_progress(1, 4)
    started = req.pull_events()
    req.record_progress(2, 4)
    # A step within training is core's ModelProgressed already: the request shows it,
    # model announces nothing.
    assert (req.step, req.progress, req.pull_events()) == (2, 50, [])
    req.complete()
    changes = started + req.pull_events()
    assert [(e.previous_state, e.state, e.progress) for e in changes] == [
        ("approved", "inProgress", 25),
        ("inProgress", "completed", 100),
    ]
    assert all(isinstance(e, events.StateChanged) for e in changes)


def test_late_progress_changes_nothing() -> None:
    req = in_state(State.IN_PROGRESS)
    req.record_progress(3, 4)
    req.pull_events()
    req.record_progress(2, 4)
    assert req.step == 3 and req.pull_events() == []


def test_completion_of_a_cancelled_request_is_refused_and_it_stays_cancelled() -> None:
    req = in_state(State.IN_PROGRESS)
    req.cancel()
    req.pull_events()
    with pytest.raises(IllegalTransition):
        req.complete()
    assert req.state == State.CANCELED and req.pull_events() == []


def test_failure_keeps_the_reason() -> None:
    req = in_state(State.IN_PROGRESS)
    req.fail("vertica unreachable")
    [event] = req.pull_events()
    assert (req.state, event.reason, event.previous_state) == (
        State.FAILED,
        "vertica unreachable",
        "inProgress",
    )


def test_a_failed_request_whose_job_is_redriven_trains_and_completes_again() -> None:
    req = in_state(State.IN_PROGRESS)
    req.fail("vertica unreachable")
    req.pull_events()
    req.record_progress(1, 3)
    req.complete()
    resumed, completed = req.pull_events()
    assert (resumed.previous_state, resumed.state, resumed.reason) == ("failed", "inProgress", None)
    assert (req.state, req.reason, completed.state, completed.progress) == (
        State.COMPLETED,
        None,
        "completed",
        100,
    )
