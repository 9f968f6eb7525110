"""Without an exporter no span is recorded, yet each request keeps its trace.

``nocode up`` runs with no OTLP endpoint, so nothing would ever read a span: the services
record none (recording is what tracing costs). A request's trace id is still in every log
line of its story, in every service, and its ``traceparent`` goes on through the gateway,
the service, the outbox and the topic to each consumer, with the caller's sampling
decision. A span processor added later to one service (mypage_cqrs's exporter here) turns
recording on there: its consumer span lands in the caller's trace, the child of the
publish the record names, which model did not record.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from contracts.topics import MODEL_EVENTS
from tests.connected.whole_platform import whole_platform
from tests.support import ce, eventually, read_topic

pytestmark = pytest.mark.connected

UNRECORDED = "5bf92f3577b34da6a3ce929d0e0e4736"
RECORDED_DOWNSTREAM = "6bf92f3577b34da6a3ce929d0e0e4736"


def caller(trace_id: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The service of every span the SDK starts recording in this process."""
    services: list[str] = []
    start = sdk_trace.Span.start

    def counting(span: sdk_trace.Span, *args: Any, **kwargs: Any) -> None:
        services.append(str(span.resource.attributes["service.name"]))
        start(span, *args, **kwargs)

    monkeypatch.setattr(sdk_trace.Span, "start", counting)
    return services


def traceparents(records: list, trace_id: str) -> list[str]:
    found = [ce(record).get("traceparent", "") for record in records]
    return [header for header in found if header.split("-")[1:2] == [trace_id]]


async def test_unrecorded_spans_keep_the_trace_and_a_later_processor_records(
    json_logs: io.StringIO, recorded: list[str], postgres_admin_url: str, topics: str
) -> None:
    async with whole_platform(postgres_admin_url, topics) as (platform, gateway):
        created = await gateway.post(
            "/models", json={"userId": "test", "modelName": "Quiet"}, headers=caller(UNRECORDED)
        )
        assert created.status_code == 201, created.text

        async def story() -> list[dict] | None:
            lines = [orjson.loads(line) for line in json_logs.getvalue().splitlines()]
            ours = [line for line in lines if line.get("trace_id") == UNRECORDED]
            done = {"gateway", "model", "mypage_cqrs", "notice"} <= {
                line["service"] for line in ours
            } and any(line["event"] == "chat message sent" for line in ours)
            return ours if done else None

        # Through the gateway into model, through model.events into each consumer, and
        # through notice's queue to the chat message: one trace id in every service's logs.
        ours = await eventually(story, what="the request's chat message in its trace's logs")
        assert all(len(line["span_id"]) == 16 for line in ours)
        [access] = [
            line for line in ours if (line["event"], line.get("method")) == ("request", "POST")
        ]
        assert (access["service"], access["status"]) == ("gateway", 201)
        # The record carries the trace on, sampled as the caller asked.
        records = await read_topic(topics, MODEL_EVENTS, expect=1)
        [header] = traceparents(records, UNRECORDED)
        assert header.endswith("-01")
        assert recorded == []

        # An exporter added to mypage_cqrs now: it alone records, in the caller's trace.
        exporter = InMemorySpanExporter()
        platform.tracings()["mypage_cqrs"].add_span_processor(SimpleSpanProcessor(exporter))
        created = await gateway.post(
            "/models",
            json={"userId": "test", "modelName": "Recorded"},
            headers=caller(RECORDED_DOWNSTREAM),
        )
        assert created.status_code == 201, created.text

        async def consumed() -> list[sdk_trace.ReadableSpan]:
            return [
                span
                for span in exporter.get_finished_spans()
                if f"{span.context.trace_id:032x}" == RECORDED_DOWNSTREAM
            ]

        [span] = await eventually(consumed, what="mypage_cqrs's span of the second request")
        assert (span.kind, span.name) == (SpanKind.CONSUMER, f"process {MODEL_EVENTS}")
        assert span.resource.attributes["service.name"] == "mypage_cqrs"
        records = await read_topic(topics, MODEL_EVENTS, expect=2)
        [header] = traceparents(records, RECORDED_DOWNSTREAM)
        assert span.parent is not None and f"{span.parent.span_id:016x}" == header.split("-")[2]
        assert set(recorded) == {"mypage_cqrs"}
