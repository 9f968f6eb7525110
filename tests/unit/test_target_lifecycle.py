"""The TargetRequest state machine: every legal and every illegal transition; model records."""

from __future__ import annotations

import itertools

import pytest

from contracts import target as events
from servicekit.statemachine import IllegalTransition
from target.domain import (
    LIFECYCLE,
    MODEL_TERMINAL,
    Action,
    ModelGone,
    ModelNotCompleted,
    ModelRecord,
    State,
    TargetRequest,
)

LEGAL = {
    (State.REQUESTED, Action.APPROVE): State.APPROVED,
    (State.REQUESTED, Action.REJECT): State.REJECTED,
    (State.REQUESTED, Action.CANCEL): State.CANCELED,
    (State.APPROVED, Action.CANCEL): State.CANCELED,
    (State.APPROVED, Action.COMPLETE): State.COMPLETED,
    (State.APPROVED, Action.FAIL): State.FAILED,
    (State.FAILED, Action.COMPLETE): State.COMPLETED,
}
ALL_PAIRS = list(itertools.product(State, Action))
ILLEGAL = [p for p in ALL_PAIRS if p not in LEGAL]


def test_wire_values() -> None:
    assert [s.value for s in State] == [
        "requested",
        "approved",
        "completed",
        "failed",
        "rejected",
        "canceled",
    ]


@pytest.mark.parametrize(("state", "action"), list(LEGAL))
def test_legal_transition(state: State, action: Action) -> None:
    assert LIFECYCLE.next(7, state, action) == LEGAL[(state, action)]


@pytest.mark.parametrize(("state", "action"), ILLEGAL)
def test_illegal_transition_names_state_and_action(state: State, action: Action) -> None:
    with pytest.raises(IllegalTransition) as refused:
        LIFECYCLE.next(7, state, action)
    assert str(refused.value) == f"cannot {action} target request 7: it is {state}"
    assert refused.value.state == state and refused.value.action == action


def in_state(state: State) -> TargetRequest:
    return TargetRequest(id=3, user_id="test", type="vip", model_request_id=1, state=state)


def act(req: TargetRequest, action: Action) -> None:
    {
        Action.APPROVE: lambda: req.approve("completed"),
        Action.REJECT: lambda: req.reject("no budget"),
        Action.CANCEL: lambda: req.cancel("changed my mind"),
        Action.COMPLETE: req.complete,
        Action.FAIL: lambda: req.fail("vertica down"),
    }[action]()


@pytest.mark.parametrize(("state", "action"), ILLEGAL)
def test_the_aggregate_refuses_illegal_actions_and_changes_nothing(
    state: State, action: Action
) -> None:
    req = in_state(state)
    with pytest.raises(IllegalTransition):
        act(req, action)
    assert req.state == state and req.reason is None and req.pull_events() == []


EXPECTED_EVENT = {
    Action.APPROVE: (events.TargetApproved, None),
    Action.REJECT: (events.TargetRejected, "no budget"),
    Action.CANCEL: (events.TargetCanceled, "changed my mind"),
    Action.COMPLETE: (events.TargetStateChanged, None),
    Action.FAIL: (events.TargetStateChanged, "vertica down"),
}


@pytest.mark.parametrize(("state", "action"), list(LEGAL))
def test_each_legal_action_announces_its_event(state: State, action: Action) -> None:
    req = in_state(state)
    act(req, action)
    [event] = req.pull_events()
    event_type, reason = EXPECTED_EVENT[action]
    assert type(event) is event_type
    assert (event.state, event.previous_state) == (LEGAL[(state, action)].value, state.value)
    assert req.state == LEGAL[(state, action)] and req.reason == reason
    assert getattr(event, "reason", None) == reason


def test_request_announces_target_requested_in_the_seed_shape() -> None:
    req = TargetRequest.request(15, "test", "vip", 4)
    [event] = req.pull_events()
    value = event.to_value()
    assert list(value) == [
        "eventType",
        "timestamp",
        "id",
        "state",
        "userId",
        "type",
        "modelRequestId",
    ]
    assert value | {"timestamp": 0} == {
        "eventType": "TargetRequested",
        "timestamp": 0,
        "id": 15,
        "state": "requested",
        "userId": "test",
        "type": "vip",
        "modelRequestId": 4,
    }
    assert req.pull_events() == []


@pytest.mark.parametrize("model_state", [None, "requested", "approved", "inProgress", "failed"])
def test_approval_needs_a_completed_model(model_state: str | None) -> None:
    req = in_state(State.REQUESTED)
    with pytest.raises(ModelNotCompleted) as refused:
        req.approve(model_state)
    known = model_state or "unknown to target yet"
    assert str(refused.value) == (
        f"cannot approve target request 3: its model request 1 is {known}, not completed"
    )
    assert isinstance(refused.value, IllegalTransition)
    assert (refused.value.state, refused.value.action) == (State.REQUESTED, Action.APPROVE)
    assert req.state == State.REQUESTED and req.pull_events() == []


def test_approving_a_cancelled_target_names_the_target_state_first() -> None:
    req = in_state(State.CANCELED)
    with pytest.raises(IllegalTransition) as refused:
        req.approve(None)
    assert type(refused.value) is IllegalTransition
    assert str(refused.value) == "cannot approve target request 3: it is canceled"


def test_a_model_that_will_never_complete_names_itself() -> None:
    refused = ModelGone(1, "requestCanceled")
    assert str(refused) == (
        "cannot request a target of model request 1: the model request is requestCanceled"
    )
    assert (str(refused.state), str(refused.action)) == ("requestCanceled", "request")


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        ("requested", "approved", True),
        ("approved", "inProgress", True),
        ("inProgress", "inProgress", False),
        ("inProgress", "completed", True),
        ("inProgress", "requestCanceled", True),
        ("requested", "rejected", True),
        *[(terminal, "inProgress", False) for terminal in sorted(MODEL_TERMINAL)],
        *[(terminal, "requested", False) for terminal in sorted(MODEL_TERMINAL)],
    ],
)
def test_model_record_never_leaves_a_terminal_state_for_a_live_one(
    old: str, new: str, changed: bool
) -> None:
    record = ModelRecord(1, old)
    assert record.record(new) is changed
    assert record.state == (new if changed else old)


@pytest.mark.parametrize(
    ("state", "gone"),
    [
        ("requested", False),
        ("inProgress", False),
        ("completed", False),
        ("requestCanceled", True),
        ("rejected", True),
        ("failed", True),
    ],
)
def test_models_whose_targets_are_compensated(state: str, gone: bool) -> None:
    assert ModelRecord(1, state).gone is gone
