"""Notice handlers against a fake unit of work; the sender's retry policy."""

from __future__ import annotations

import pytest

from contracts import core, model, target
from notice import handlers
from notice.messages import Notice, TargetInfo
from notice.sender import RetryPolicy


class FakeNotifications:
    def __init__(self) -> None:
        self.rows: dict[str, Notice] = {}

    async def add(self, notice: Notice, event_id: str, event_type: str) -> None:
        self.rows.setdefault(event_id, notice)


class FakeTargets:
    def __init__(self) -> None:
        self.rows: dict[int, TargetInfo] = {}

    async def remember(self, info: TargetInfo) -> None:
        self.rows[info.id] = info

    async def get(self, id: int) -> TargetInfo | None:
        return self.rows.get(id)


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.notifications = FakeNotifications()
        self.targets = FakeTargets()


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def texts(uow: FakeUnitOfWork) -> list[str]:
    return [n.text for n in uow.notifications.rows.values()]


async def test_target_events_teach_notice_who_owns_the_target_core_reports_on(
    uow: FakeUnitOfWork,
) -> None:
    requested = target.TargetRequested(
        id=2, user_id="kim", type="vip", model_request_id=1, state="requested"
    )
    await handlers.on_target_event(uow, requested)
    await handlers.on_lms_event(uow, core.LmsSent(id=8, request_id="2", midas_send_id="m-1"))
    assert texts(uow) == [
        "Target request #2 (vip, model #1) by kim: new → requested",
        "Target request #2 (vip, model #1) by kim: LMS bulk send accepted by MIDAS (send id m-1)",
    ]
    assert [n.user_id for n in uow.notifications.rows.values()] == ["kim", "kim"]


async def test_progress_steps_store_nothing(uow: FakeUnitOfWork) -> None:
    step = model.StateChanged(
        id=1, user_id="u", model_name="m", state="inProgress", previous_state="inProgress"
    )
    await handlers.on_model_event(uow, step)
    assert uow.notifications.rows == {}


async def test_the_same_event_twice_stores_one_notification(uow: FakeUnitOfWork) -> None:
    event = model.Approved(id=1, user_id="u", model_name="m", state="approved")
    await handlers.on_model_event(uow, event)
    await handlers.on_model_event(uow, event)
    assert texts(uow) == ['Model request #1 "m" by u: requested → approved']


def test_state_changes_without_a_message_are_not_even_handled() -> None:
    assert model.CompletionRefused not in handlers.HANDLERS
    assert core.JobCanceled not in handlers.HANDLERS
    assert core.ModelProgressed not in handlers.HANDLERS


def test_retry_policy_gives_up_on_a_rejected_message_after_the_last_attempt() -> None:
    policy = RetryPolicy(max_attempts=4, initial_s=1.0, max_s=3.0)
    delays = [policy.delay_after(n, chat_down=False) for n in (1, 2, 3, 4, 5)]
    assert delays[3:] == [None, None]
    caps = (1.0, 2.0, 3.0)
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays[:3], caps, strict=True))  # jitter


def test_retry_policy_never_gives_up_while_the_chat_is_down() -> None:
    policy = RetryPolicy(max_attempts=4, initial_s=1.0, max_s=3.0)
    delays = [policy.delay_after(n, chat_down=True) for n in (1, 2, 3, 4, 5, 50)]
    caps = (1.0, 2.0, 3.0, 3.0, 3.0, 3.0)
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True))  # jittered
