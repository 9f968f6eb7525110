"""One trace per request across HTTP and Kafka, on the whole platform.

Every service's tracer provider also sends its spans to one in-memory exporter, so
the test sees what Jaeger would: which service made each span, its kind, name and
parent. A data scientist's client sends ``POST /models`` and the admin's approve in
one trace (one ``traceparent`` trace id); the training, the compensation check, the
chat messages and the read model's updates must all land in that trace, each Kafka
consumer a child of the relay's publish of the record it consumed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from contracts.topics import CORE_EVENTS, MODEL_EVENTS
from tests.connected.whole_platform import Platform, whole_platform
from tests.support import ce, eventually, read_topic, topic_values

pytestmark = pytest.mark.connected

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def traceparent(span_id: int) -> str:
    return f"00-{TRACE_ID}-{span_id:016x}-01"


@pytest.fixture
async def traced(
    postgres_admin_url: str, topics: str
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    # model traces its SQL statements (TRACE_SQL; off by default: a span per request only).
    sql = {"trace_sql": True}
    async with whole_platform(postgres_admin_url, topics, model=sql) as (platform, gateway):
        for tracing in platform.tracings().values():
            tracing.add_span_processor(SimpleSpanProcessor(exporter))
        yield platform, gateway, exporter


class Spans:
    def __init__(self, spans: Iterable[ReadableSpan]) -> None:
        self.all = [s for s in spans if f"{s.context.trace_id:032x}" == TRACE_ID]
        self.by_id = {s.context.span_id: s for s in self.all}
        self.children: dict[int, list[ReadableSpan]] = defaultdict(list)
        for span in sorted(self.all, key=lambda s: s.start_time or 0):
            if span.parent is not None:
                self.children[span.parent.span_id].append(span)

    def parent(self, span: ReadableSpan) -> ReadableSpan | None:
        return self.by_id.get(span.parent.span_id) if span.parent else None

    def ancestry(self, span: ReadableSpan) -> list[tuple[str, str, str]]:
        chain = []
        current: ReadableSpan | None = span
        while current is not None:
            chain.append((service(current), current.kind.name, current.name))
            current = self.parent(current)
        return chain

    def find(self, svc: str, kind: SpanKind, name: str) -> list[ReadableSpan]:
        return [s for s in self.all if (service(s), s.kind, s.name) == (svc, kind, name)]

    def roots(self) -> list[ReadableSpan]:
        return [s for s in self.all if self.parent(s) is None]

    def tree(self) -> str:
        lines: list[str] = []

        def walk(span: ReadableSpan, depth: int) -> None:
            lines.append(f"{'  ' * depth}{service(span):<12} {span.kind.name:<8} {span.name}")
            sql = [c for c in self.children[span.context.span_id] if is_sql(c)]
            if sql:
                lines.append(f"{'  ' * (depth + 1)}{service(span):<12} CLIENT   SQL x{len(sql)}")
            for child in self.children[span.context.span_id]:
                if not is_sql(child):
                    walk(child, depth + 1)

        for root in sorted(self.roots(), key=lambda s: s.start_time or 0):
            walk(root, 0)
        return "\n".join(lines)


def service(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


def is_sql(span: ReadableSpan) -> bool:
    attributes = span.attributes or {}
    return "db.system" in attributes or "db.system.name" in attributes


async def model_is(gateway: httpx.AsyncClient, mid: int, state: str) -> bool:
    return (await gateway.get(f"/models/{mid}")).json()["state"] == state


async def test_a_request_and_its_approval_are_one_trace_across_every_service(
    traced: tuple[Platform, httpx.AsyncClient, InMemorySpanExporter], topics: str
) -> None:
    _, gateway, exporter = traced

    created = await gateway.post(
        "/models",
        json={"userId": "test", "modelName": "Traced"},
        headers={"traceparent": traceparent(1)},
    )
    assert created.status_code == 201, created.text
    mid = created.json()["id"]
    approved = await gateway.put(
        "/models", json={"id": mid}, headers={"traceparent": traceparent(2)}
    )
    assert approved.status_code == 200, approved.text
    await eventually(lambda: model_is(gateway, mid, "completed"), what="training")

    # Every record of this request, consumed by each subscriber that handles it (a
    # consumer skips the types it has no handler for without a span), in the trace.
    model_values = await topic_values(topics, MODEL_EVENTS)
    model_records = len(model_values)
    # model announces its states only: the training's steps are core's ModelProgressed.
    assert [v["state"] for v in model_values if v["eventType"] == "StateChanged"] == [
        "inProgress",
        "completed",
    ]
    core_records = len(await topic_values(topics, CORE_EVENTS))
    expected = {
        ("model", f"publish {MODEL_EVENTS}"): model_records,
        ("core", f"publish {CORE_EVENTS}"): core_records,
        ("notice", f"process {MODEL_EVENTS}"): model_records,
        ("mypage_cqrs", f"process {MODEL_EVENTS}"): model_records,
        ("target", f"process {MODEL_EVENTS}"): model_records,
        ("model", f"process {CORE_EVENTS}"): core_records,
        ("core", f"process {MODEL_EVENTS}"): 1,  # Approved starts the training job
    }
    missing: dict[tuple[str, str], str] = {}

    async def all_in() -> Spans | None:
        spans = Spans(exporter.get_finished_spans())
        seen = Counter((service(s), s.name) for s in spans.all)
        missing.clear()
        missing.update({k: f"{seen[k]}/{n}" for k, n in expected.items() if seen[k] < n})
        return None if missing else spans

    try:
        spans = await eventually(all_in, what="every consumer's span in the trace")
    except AssertionError:
        raise AssertionError(f"spans missing from the trace (seen/expected): {missing}") from None
    print(f"\nspan tree of trace {TRACE_ID} ({len(spans.all)} spans):\n{spans.tree()}")

    # One trace id across the gateway, model, the relay, core, notice and mypage.
    assert {service(s) for s in spans.all} >= {
        "gateway",
        "model",
        "core",
        "notice",
        "mypage_cqrs",
        "target",
    }
    # No span of this request's work started a trace of its own.
    everywhere = exporter.get_finished_spans()
    stray = [
        s.name
        for s in everywhere
        if s.kind == SpanKind.CONSUMER
        and (s.attributes or {}).get("messaging.kafka.message.key") == str(mid)
        and f"{s.context.trace_id:032x}" != TRACE_ID
    ]
    assert stray == []

    # Across Kafka: each consumer is the child of the publish of the record it consumed,
    # and each publish the child of the work that stored its outbox row.
    owner = {MODEL_EVENTS: "model", CORE_EVENTS: "core"}
    for span in spans.all:
        if span.kind != SpanKind.CONSUMER:
            continue
        topic = span.name.removeprefix("process ")
        publish = spans.parent(span)
        assert publish is not None, span.name
        assert (service(publish), publish.kind, publish.name) == (
            owner[topic],
            SpanKind.PRODUCER,
            f"publish {topic}",
        )
        assert publish.attributes["messaging.message.id"] == span.attributes["messaging.message.id"]
        writer = spans.parent(publish)
        assert writer is not None and service(writer) == owner[topic]

    # The approval's path: client → gateway → model → relay → core's consumer → the job.
    [job] = spans.find("core", SpanKind.INTERNAL, "model job")
    assert spans.ancestry(job) == [
        ("core", "INTERNAL", "model job"),
        ("core", "CONSUMER", f"process {MODEL_EVENTS}"),
        ("model", "PRODUCER", f"publish {MODEL_EVENTS}"),
        ("model", "SERVER", "PUT /models"),
        ("gateway", "CLIENT", "PUT"),
        ("gateway", "SERVER", "PUT /models"),
    ]
    assert f"{spans.roots()[0].parent.span_id:016x}" in {
        traceparent(1)[36:52],
        traceparent(2)[36:52],
    }

    # The compensation check is a call from the job into model, in the same trace.
    [check] = spans.find("model", SpanKind.SERVER, "GET /models/{id}")
    assert spans.ancestry(check)[:3] == [
        ("model", "SERVER", "GET /models/{id}"),
        ("core", "CLIENT", "GET"),
        ("core", "INTERNAL", "model job"),
    ]
    # The chat message goes out in the trace too, as a call to the webhook.
    sends = spans.find("notice", SpanKind.INTERNAL, "send chat message")
    assert sends and all(
        [(service(c), c.kind) for c in spans.children[s.context.span_id]][-1:]
        == [("notice", SpanKind.CLIENT)]
        for s in sends
    )
    # Database work is traced under the request that did it (model has TRACE_SQL on), and
    # only where asked for: target's consumer made no SQL span.
    [post] = spans.find("model", SpanKind.SERVER, "POST /models")
    assert any(is_sql(c) for c in spans.children[post.context.span_id])
    assert not [s for s in spans.all if service(s) == "target" and is_sql(s)]

    # The record on the topic carries the publish span's context in its traceparent header.
    records = await read_topic(topics, MODEL_EVENTS, expect=model_records)
    approved_record = next(r for r in records if ce(r)["ce_type"] == "nocode.model.Approved")
    header = ce(approved_record)["traceparent"]
    publish = spans.by_id[int(header.split("-")[2], 16)]
    assert (service(publish), publish.name) == ("model", f"publish {MODEL_EVENTS}")


async def test_b3_headers_from_a_mesh_continue_the_trace(
    traced: tuple[Platform, httpx.AsyncClient, InMemorySpanExporter],
) -> None:
    _, gateway, exporter = traced
    b3 = {"X-B3-TraceId": TRACE_ID, "X-B3-SpanId": "00f067aa0ba902b7", "X-B3-Sampled": "1"}
    listed = await gateway.get("/models", params={"userId": "test"}, headers=b3)
    assert listed.status_code == 200

    async def served() -> Spans | None:
        spans = Spans(exporter.get_finished_spans())
        return spans if spans.find("model", SpanKind.SERVER, "GET /models") else None

    spans = await eventually(served, what="model's span")
    [server] = spans.find("model", SpanKind.SERVER, "GET /models")
    assert spans.ancestry(server) == [
        ("model", "SERVER", "GET /models"),
        ("gateway", "CLIENT", "GET"),
        ("gateway", "SERVER", "GET /models"),
    ]
    assert f"{spans.roots()[0].parent.span_id:016x}" == "00f067aa0ba902b7"
