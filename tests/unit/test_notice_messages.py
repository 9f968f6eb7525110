"""The chat message each event calls for: who, which request, old → new state, why."""

from __future__ import annotations

import pytest

from contracts import Event, core, model, target
from notice.messages import Notice, TargetInfo, notice_for

M = {"id": 3, "user_id": "test", "model_name": "TestModel10"}
T = {"id": 2, "user_id": "test", "type": "testtype", "model_request_id": 1}
KNOWN = TargetInfo(id=2, user_id="test", type="testtype", model_request_id=1)
MODEL = 'Model request #3 "TestModel10" by test'
TARGET = "Target request #2 (testtype, model #1) by test"


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (model.Requested(**M, state="requested"), f"{MODEL}: new → requested"),
        (model.Approved(**M, state="approved"), f"{MODEL}: requested → approved"),
        (
            model.Rejected(**M, state="rejected", reason="not enough data"),
            f"{MODEL}: requested → rejected — not enough data",
        ),
        (
            model.RequestCanceled(**M, state="requestCanceled", previous_state="inProgress"),
            f"{MODEL}: inProgress → requestCanceled",
        ),
        (
            model.RequestCanceled(
                **M, state="requestCanceled", previous_state="approved", reason="changed my mind"
            ),
            f"{MODEL}: approved → requestCanceled — changed my mind",
        ),
        (
            model.StateChanged(**M, state="inProgress", previous_state="approved", step=1),
            f"{MODEL}: approved → inProgress",
        ),
        (
            model.StateChanged(**M, state="completed", previous_state="inProgress", progress=100),
            f"{MODEL}: inProgress → completed",
        ),
        (
            model.StateChanged(
                **M, state="failed", previous_state="inProgress", reason="vertica unreachable"
            ),
            f"{MODEL}: inProgress → failed — vertica unreachable",
        ),
    ],
)
def test_model_state_changes(event: Event, text: str) -> None:
    assert notice_for(event) == Notice("test", "model", 3, text)


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (target.TargetRequested(**T, state="requested"), f"{TARGET}: new → requested"),
        (target.TargetApproved(**T, state="approved"), f"{TARGET}: requested → approved"),
        (
            target.TargetRejected(**T, state="rejected", reason="too broad"),
            f"{TARGET}: requested → rejected — too broad",
        ),
        (
            target.TargetCanceled(
                **T,
                state="canceled",
                previous_state="requested",
                reason="model request 1 was requestCanceled",
            ),
            f"{TARGET}: requested → canceled — model request 1 was requestCanceled",
        ),
        (
            target.TargetCanceled(**T, state="canceled", previous_state="approved"),
            f"{TARGET}: approved → canceled",
        ),
        (
            target.TargetStateChanged(**T, state="completed", previous_state="approved"),
            f"{TARGET}: approved → completed",
        ),
        (
            target.TargetStateChanged(
                **T, state="failed", previous_state="approved", reason="extraction crashed"
            ),
            f"{TARGET}: approved → failed — extraction crashed",
        ),
    ],
)
def test_target_state_changes(event: Event, text: str) -> None:
    assert notice_for(event) == Notice("test", "target", 2, text)


def test_lms_outcomes_name_the_target_and_its_owner() -> None:
    sent = core.LmsSent(id=9, request_id="2", midas_send_id="send-42")
    failed = core.LmsFailed(id=9, request_id="2", reason="MIDAS refused 5 times")
    assert notice_for(sent, KNOWN) == Notice(
        "test", "target", 2, f"{TARGET}: LMS bulk send accepted by MIDAS (send id send-42)"
    )
    assert notice_for(failed, KNOWN) == Notice(
        "test", "target", 2, f"{TARGET}: LMS bulk send failed — MIDAS refused 5 times"
    )


def test_lms_outcome_of_an_unknown_target_still_says_which_request() -> None:
    sent = core.LmsSent(id=9, request_id="7", midas_send_id="s")
    assert notice_for(sent) == Notice(
        None, "target", 7, "Target request #7: LMS bulk send accepted by MIDAS (send id s)"
    )


@pytest.mark.parametrize(
    "event",
    [
        # A training step: inProgress → inProgress is progress, not a state change.
        model.StateChanged(**M, state="inProgress", previous_state="inProgress", step=2),
        model.CompletionRefused(**M, state="requestCanceled", job_id=4, reason="late"),
        core.JobCanceled(id=4, type="model", request_id="3", reason="cancelled"),
        core.ModelProgressed(id=4, request_id="3", step=2, total_steps=5),
        core.ModelCompleted(id=4, request_id="3"),
        core.TargetCompleted(id=5, request_id="2"),
        target.TargetStateChanged(**T, state="completed", previous_state="completed"),
    ],
)
def test_no_message_without_a_state_change(event: Event) -> None:
    assert notice_for(event, KNOWN) is None


# --- forged chat text (issue 12): what a user typed is one line of plain text -------------

FORGED_NAME = (
    'x" by test: requested → rejected\nModel request #1 "Real" by boss: requested → approved ✅'
)


def test_a_forged_second_line_in_a_model_name_stays_on_the_first():
    notice = notice_for(model.Requested(**{**M, "model_name": FORGED_NAME}, state="requested"))
    assert notice is not None
    assert "\n" not in notice.text and "\r" not in notice.text
    assert notice.text.startswith('Model request #3 "x" by test: requested → rejected Model')
    assert notice.text.endswith("by test: new → requested")


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("<!here> deploy now", "&lt;!here&gt; deploy now"),
        ("<!channel>", "&lt;!channel&gt;"),
        ("hi <@U024BE7LH>", "hi &lt;\uff20U024BE7LH&gt;"),
        ("<https://evil.example|click me>", "&lt;https://evil.example|click me&gt;"),
        ("a & b", "a &amp; b"),
        ("@channel @here @everyone", "\uff20channel \uff20here \uff20everyone"),
        ("mail a@b.com", "mail a@b.com"),
        (
            "*approved* _ok_ ~no~ `code`",
            "\u2217approved\u2217 \u02cdok\u02cd \u02dcno\u02dc \u02cbcode\u02cb",
        ),
        ("tab\there\r\nnul\x00end\u2028sep", "tab here nul end sep"),
    ],
)
def test_markup_in_a_reason_is_escaped(typed: str, shown: str):
    event = model.Rejected(**M, state="rejected", reason=typed)
    notice = notice_for(event)
    assert notice is not None
    assert notice.text == f"{MODEL}: requested → rejected — {shown}"


def test_a_target_type_and_user_are_escaped_and_capped():
    info = TargetInfo(id=2, user_id="<!here>", type="t\n" + "y" * 500, model_request_id=1)
    notice = notice_for(core.LmsFailed(id=9, request_id="2", reason="*down*"), info)
    assert notice is not None
    assert "\n" not in notice.text and "<" not in notice.text and "*" not in notice.text
    kind = notice.text.split("(")[1].split(",")[0]
    assert len(kind) == 120 and kind.endswith("…")
    assert "by &lt;!here&gt;" in notice.text


def test_a_long_reason_is_capped():
    notice = notice_for(model.Rejected(**M, state="rejected", reason="r" * 5000))
    assert notice is not None
    reason = notice.text.split(" — ", 1)[1]
    assert len(reason) == 300 and reason.endswith("…")
