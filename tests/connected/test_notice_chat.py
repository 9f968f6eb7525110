"""notice end to end: events on the topics → notifications → the chat webhook (the simulator)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from contracts import Event, core, model, target
from notice.bootstrap import build
from notice.settings import NoticeSettings
from simulators.app import build_app
from tests.connected.services import running, settings_for
from tests.support import bearer, free_port, publish, serving

pytestmark = pytest.mark.connected

T = TypeVar("T")

M1 = {"id": 1, "user_id": "test", "model_name": "TestModel10"}
M3 = {"id": 3, "user_id": "kim", "model_name": "Churn"}
T2 = {"id": 2, "user_id": "test", "type": "testtype", "model_request_id": 1}
MODEL1 = 'Model request #1 "TestModel10" by test'
TARGET2 = "Target request #2 (testtype, model #1) by test"


@contextlib.asynccontextmanager
async def notice_with_chat(
    notice_db: str, topics: str, **overrides: object
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The notice service posting to a chat simulator; yields (notice, chat) clients."""
    async with (
        serving(build_app(), free_port()) as chat_url,
        httpx.AsyncClient(base_url=chat_url, timeout=10) as chat,
    ):
        settings = settings_for(
            NoticeSettings,
            notice_db,
            topics,
            chat_webhook_url=f"{chat_url}/chat/webhook",
            chat_timeout_s=2.0,
            notice_backoff_initial_s=0.05,
            notice_backoff_max_s=0.2,
            notice_poll_interval_s=0.1,
            **overrides,
        )
        async with running(build, settings) as (client, _):
            yield client, chat


async def eventually(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float = 20.0
) -> T:
    """Poll ``read`` until ``done`` holds (returns the last value either way)."""
    deadline = time.monotonic() + timeout_s
    value = await read()
    while not done(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        value = await read()
    return value


def getter(client: httpx.AsyncClient, path: str, **params: Any) -> Callable[[], Awaitable[Any]]:
    async def read() -> Any:
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    return read


def received(chat: httpx.AsyncClient) -> Callable[[], Awaitable[list[str]]]:
    async def read() -> list[str]:
        return [m["text"] for m in (await chat.get("/chat/messages")).json()]

    return read


def all_sent(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda rows: len(rows) == count and all(r["status"] == "sent" for r in rows)


async def test_every_state_change_becomes_one_chat_message(notice_db: str, topics: str) -> None:
    model_events: list[Event] = [
        model.Requested(**M1, state="requested"),
        model.Approved(**M1, state="approved"),
        model.StateChanged(**M1, state="inProgress", previous_state="approved", step=1),
        model.StateChanged(**M1, state="inProgress", previous_state="inProgress", step=2),
        model.StateChanged(**M1, state="completed", previous_state="inProgress", progress=100),
        model.Requested(**M3, state="requested"),
        model.Rejected(**M3, state="rejected", reason="not enough data"),
    ]
    target_events: list[Event] = [
        target.TargetRequested(**T2, state="requested"),
        target.TargetApproved(**T2, state="approved"),
        target.TargetStateChanged(**T2, state="completed", previous_state="approved"),
    ]
    # Not state changes: no message.
    core_events: list[Event] = [
        core.ModelProgressed(id=5, request_id="1", step=2, total_steps=3),
        core.JobCanceled(id=6, type="model", request_id="3", reason="request cancelled"),
        core.LmsSent(id=7, request_id="2", midas_send_id="send-42"),
    ]
    refused = model.CompletionRefused(**M3, state="rejected", job_id=6, reason="refused")
    expected_test = [
        f"{MODEL1}: new → requested",
        f"{MODEL1}: requested → approved",
        f"{MODEL1}: approved → inProgress",
        f"{MODEL1}: inProgress → completed",
        f"{TARGET2}: new → requested",
        f"{TARGET2}: requested → approved",
        f"{TARGET2}: approved → completed",
        f"{TARGET2}: LMS bulk send accepted by MIDAS (send id send-42)",
    ]
    expected_kim = [
        'Model request #3 "Churn" by kim: new → requested',
        'Model request #3 "Churn" by kim: requested → rejected — not enough data',
    ]

    async with notice_with_chat(notice_db, topics) as (client, chat):
        await publish(topics, *model_events, *target_events, refused)
        # core's LMS event names only the target id: it comes after notice knows the target.
        await eventually(getter(client, "/notices", userId="test"), lambda r: len(r) == 7)
        await publish(topics, *core_events)
        by_test = await eventually(getter(client, "/notices", userId="test"), all_sent(8))
        everything = await eventually(getter(client, "/notices"), all_sent(10))
        messages = await eventually(received(chat), lambda m: len(m) >= 10)
        page = (await client.get("/notices", params={"limit": 2, "offset": 1})).json()
        one = await client.get(f"/notices/{by_test[0]['id']}")
        missing = await client.get("/notices/9999")

    assert sorted(messages) == sorted(expected_test + expected_kim)
    # Each request's messages reach the chat in the order its state changed.
    assert [m for m in messages if m.startswith(MODEL1)] == expected_test[:4]
    assert [m for m in messages if m.startswith(TARGET2)] == expected_test[4:]
    assert sorted(r["text"] for r in by_test) == sorted(expected_test)
    assert all(r["attempts"] == 1 and r["sentAt"] and r["lastError"] is None for r in by_test)
    assert {r["userId"] for r in everything} == {"test", "kim"}
    assert [r["id"] for r in page] == [everything[1]["id"], everything[2]["id"]]
    assert one.status_code == 200 and one.json() == by_test[0]
    assert set(one.json()) >= {
        "id",
        "eventId",
        "userId",
        "requestKind",
        "requestId",
        "text",
        "status",
        "attempts",
        "lastError",
        "createdAt",
        "sentAt",
    }
    lms = next(r for r in by_test if "LMS" in r["text"])
    assert (lms["requestKind"], lms["requestId"]) == ("target", 2)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "notice 9999 not found"}


async def test_chat_failing_three_times_then_succeeding_delivers_one_message(
    notice_db: str, topics: str
) -> None:
    async with notice_with_chat(notice_db, topics) as (client, chat):
        assert (await chat.put("/chat/_faults", json={"failNext": 3})).status_code == 200
        await publish(
            topics,
            model.Requested(**M1, state="requested"),
            model.Approved(**M1, state="approved"),
        )
        rows = await eventually(getter(client, "/notices", userId="test"), all_sent(2))
        messages = await eventually(received(chat), lambda m: len(m) >= 2)
        metrics = (await client.get("/metrics")).text

    # The approval waited for the retried request message: the chat hears them in order.
    assert messages == [f"{MODEL1}: new → requested", f"{MODEL1}: requested → approved"]
    assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 4), ("sent", 1)]
    assert "HTTP 500" in rows[0]["lastError"]
    assert "notice_send_retries_total" in metrics
    assert "notice_messages_sent_total" in metrics


async def test_a_redelivered_event_is_one_message(notice_db: str, topics: str) -> None:
    requested = model.Requested(**M1, state="requested")
    approved = model.Approved(**M1, state="approved")
    async with notice_with_chat(notice_db, topics) as (client, chat):
        # Same event id twice; the approval behind them on the same partition shows the
        # duplicate has been consumed by the time its message arrives.
        await publish(topics, requested, requested, approved)
        await eventually(getter(client, "/notices"), all_sent(2))
        messages = await eventually(received(chat), lambda m: len(m) >= 2)
        rows = (await client.get("/notices")).json()

    assert messages == [f"{MODEL1}: new → requested", f"{MODEL1}: requested → approved"]
    assert [r["eventId"] for r in rows] == [requested.event_id, approved.event_id]


async def test_chat_down_then_up_delivers_every_message_once_in_order_per_request(
    notice_db: str, topics: str
) -> None:
    """Down for longer than NOTICE_MAX_ATTEMPTS attempts: nothing is given up on."""
    models = [{"id": i, "user_id": "test", "model_name": f"Down{i}"} for i in (11, 12, 13)]
    changes = [
        lambda m: model.Requested(**m, state="requested"),
        lambda m: model.Approved(**m, state="approved", previous_state="requested"),
        lambda m: model.StateChanged(**m, state="inProgress", previous_state="approved", step=1),
    ]
    expected = {
        m["id"]: [
            f'Model request #{m["id"]} "{m["model_name"]}" by test: {change}'
            for change in ("new → requested", "requested → approved", "approved → inProgress")
        ]
        for m in models
    }
    async with notice_with_chat(notice_db, topics, notice_max_attempts=2) as (client, chat):
        await chat.put("/chat/_faults", json={"failAlways": True})  # HTTP 500: the chat is down
        for change in changes:  # interleaved across requests, as sagas run side by side
            await publish(topics, *(change(m) for m in models))
        # Each request's first message retried twice past its max attempts; none given up.
        while_down = await eventually(
            getter(client, "/notices"),
            lambda r: len(r) == 9 and all(n["attempts"] >= 4 for n in _heads(r)),
        )
        assert (await chat.get("/chat/messages")).json() == []
        await chat.put("/chat/_faults", json={})
        rows = await eventually(getter(client, "/notices"), all_sent(9))
        messages = await eventually(received(chat), lambda m: len(m) >= 9)
        await asyncio.sleep(0.5)  # anything sent twice would show up by now
        messages = await received(chat)()
        failed_metric = _metric((await client.get("/metrics")).text, "notice_messages_failed_total")

    assert {n["status"] for n in while_down} == {"pending"}
    assert all("HTTP 500" in n["lastError"] for n in _heads(while_down))
    # The later messages of a request were never tried while its first one waited.
    heads = {n["id"] for n in _heads(while_down)}
    assert [n["attempts"] for n in while_down if n["id"] not in heads] == [0] * 6
    print(f"chat received {len(messages)} messages for {len(expected)} requests")
    assert sorted(messages) == sorted(t for texts in expected.values() for t in texts)
    for id, texts in expected.items():
        assert [m for m in messages if m.startswith(f"Model request #{id} ")] == texts
    assert all(r["status"] == "sent" and r["sentAt"] for r in rows)
    assert failed_metric == 0.0


def _heads(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first notification of each request."""
    first: dict[int, dict[str, Any]] = {}
    for n in sorted(rows, key=lambda n: n["id"]):
        first.setdefault(n["requestId"], n)
    return list(first.values())


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def test_a_message_the_chat_rejects_fails_holds_its_request_and_is_redriven_once(
    notice_db: str, topics: str
) -> None:
    async with notice_with_chat(notice_db, topics, notice_max_attempts=3) as (client, chat):
        # A 400 is the chat refusing the message itself, not the chat being down.
        await chat.put("/chat/_faults", json={"failAlways": True, "status": 400})
        await publish(topics, model.Requested(**M1, state="requested"))
        [given_up] = await eventually(
            getter(client, "/notices"), lambda r: len(r) == 1 and r[0]["status"] == "failed"
        )
        await chat.put("/chat/_faults", json={})
        await publish(
            topics,
            model.Approved(**M1, state="approved", previous_state="requested"),
            model.Requested(**M3, state="requested"),
        )
        # Another request's message goes out; the approval waits behind the failed one.
        await eventually(received(chat), lambda m: len(m) >= 1)
        await asyncio.sleep(0.5)
        held = (await client.get("/notices")).json()
        listed = (await client.get("/notices/ops/failed")).json()
        dry = await client.post("/notices/ops/failed/redrive")
        as_user = await client.post(
            f"/notices/ops/failed/{given_up['id']}/redrive", headers=bearer("test")
        )
        redriven = await client.post(f"/notices/ops/failed/{given_up['id']}/redrive")
        again = await client.post(f"/notices/ops/failed/{given_up['id']}/redrive")
        rows = await eventually(getter(client, "/notices"), all_sent(3))
        await asyncio.sleep(0.5)
        messages = await received(chat)()
        batch_after = await client.post("/notices/ops/failed/redrive", params={"dryRun": "false"})

    assert (given_up["status"], given_up["attempts"], given_up["sentAt"]) == ("failed", 3, None)
    assert "HTTP 400" in given_up["lastError"]
    # (the two later events come from different partitions: either may be stored first)
    assert sorted((n["requestId"], n["id"], n["status"]) for n in held) == [
        (1, given_up["id"], "failed"),
        (1, max(n["id"] for n in held if n["requestId"] == 1), "pending"),
        (3, next(n["id"] for n in held if n["requestId"] == 3), "sent"),
    ]
    assert [(s["id"], s["state"]) for s in listed] == [(given_up["id"], "failed")]
    assert dry.status_code == 200 and dry.json()["dryRun"] is True
    assert [f["outcome"] for f in dry.json()["failed"]] == ["would_redrive"]
    assert as_user.status_code == 403
    assert redriven.status_code == 200, redriven.text
    assert (redriven.json()["state"], redriven.json()["redrives"]) == ("pending", 1)
    assert again.status_code == 409, again.text  # pending (or sent) again: nothing to do
    assert messages == [
        'Model request #3 "Churn" by kim: new → requested',
        f"{MODEL1}: new → requested",
        f"{MODEL1}: requested → approved",
    ]
    assert [r["redrives"] for r in rows] == [1, 0, 0]
    assert batch_after.json()["failed"] == []


async def test_a_forged_line_in_what_a_user_typed_reaches_the_chat_as_one_escaped_line(
    notice_db: str, topics: str
) -> None:
    """Issue 12's chat forgery, end to end: a model name that tries a second, official-looking
    line with a mention and a link arrives as one line with the markup escaped."""
    forged = 'x"\nModel request #9 approved ✅ <!here> <http://evil.example|details> @channel'
    typed = {"id": 9, "user_id": "mallory", "model_name": forged}
    async with notice_with_chat(notice_db, topics) as (_, chat):
        await publish(
            topics,
            model.Requested(**typed, state="requested"),
            model.Rejected(**typed, state="rejected", reason="no\n<!channel> *approved*"),
        )
        messages = await eventually(received(chat), lambda m: len(m) >= 2)

    assert len(messages) == 2 and all("\n" not in m for m in messages), messages
    name = (
        'x" Model request #9 approved ✅ &lt;!here&gt; &lt;http://evil.example|details&gt; '
        "\uff20channel"
    )
    assert messages[0] == f'Model request #9 "{name}" by mallory: new → requested'
    assert messages[1] == (
        f'Model request #9 "{name}" by mallory: requested → rejected'
        " — no &lt;!channel&gt; \u2217approved\u2217"
    )
    assert not any("<!" in m or "@channel" in m for m in messages)
