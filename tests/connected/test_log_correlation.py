"""One grep by trace id finds a request's whole story, across every service's JSON logs."""

from __future__ import annotations

import io

import orjson
import pytest

from tests.connected.whole_platform import whole_platform
from tests.support import eventually

pytestmark = pytest.mark.connected

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


async def test_grep_by_trace_id_finds_the_request_in_every_service(
    json_logs: io.StringIO, postgres_admin_url: str, topics: str
) -> None:
    async with whole_platform(postgres_admin_url, topics) as (_, gateway):
        traceparent = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}
        created = await gateway.post(
            "/models", json={"userId": "test", "modelName": "Logged"}, headers=traceparent
        )
        mid = created.json()["id"]
        await gateway.put("/models", json={"id": mid}, headers=traceparent)

        async def story() -> list[dict] | None:
            lines = [orjson.loads(line) for line in json_logs.getvalue().splitlines()]
            ours = [line for line in lines if line.get("trace_id") == TRACE_ID]
            done = any(line["event"] == "chat message sent" for line in ours) and any(
                line["event"] == "job completed" for line in ours
            )
            return ours if done else None

        ours = await eventually(story, what="the trained model's chat message in the logs")

    assert {line["service"] for line in ours} >= {
        "gateway",
        "model",
        "core",
        "notice",
        "mypage_cqrs",
        "target",
    }
    assert all(len(line["span_id"]) == 16 and line["level"] for line in ours)
    [access] = [line for line in ours if line["event"] == "request" and line["method"] == "POST"]
    assert access["service"] == "gateway" and access["status"] == 201 and access["request_id"]
    consumed = [line for line in ours if line["event"] == "event consumed"]
    assert consumed and all(line["event_id"] and line["event_type"] for line in consumed)
    assert any(line["service"] == "mypage_cqrs" for line in consumed)
