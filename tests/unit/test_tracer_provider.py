"""A service's tracer records spans only while a span processor reads them; until then its
spans are unrecorded but keep real contexts, so trace ids reach the logs and trace context
goes on to the next service exactly as a recorded span's would."""

from __future__ import annotations

from opentelemetry import propagate
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from servicekit.logging import add_trace_ids
from servicekit.tracing import Tracing, current_traceparent, span_from

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def caller(flags: str = "01") -> dict[str, str]:
    return {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-{flags}"}


def outgoing() -> dict[str, str]:
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def test_without_a_processor_a_request_continues_the_callers_trace_unrecorded() -> None:
    tracing = Tracing("model")
    with tracing.tracer.start_as_current_span(
        "POST", context=propagate.extract(caller()), kind=SpanKind.SERVER
    ) as span:
        assert not span.is_recording()
        ctx = span.get_span_context()
        assert f"{ctx.trace_id:032x}" == TRACE_ID and f"{ctx.span_id:016x}" != CALLER_SPAN
        # Logs name the trace, the span and the service that made it.
        line = add_trace_ids(None, "info", {"event": "x"})
        assert line == {
            "event": "x",
            "trace_id": TRACE_ID,
            "span_id": f"{ctx.span_id:016x}",
            "service": "model",
        }
        # The next hop (HTTP, W3C and B3; an outbox row) continues it, still sampled.
        headers = outgoing()
        assert headers["traceparent"] == f"00-{TRACE_ID}-{ctx.span_id:016x}-01"
        assert (headers["x-b3-traceid"], headers["x-b3-sampled"]) == (TRACE_ID, "1")
        assert current_traceparent() == headers["traceparent"]
        # A client span from an instrumentation's tracer of the same provider, too.
        client = tracing.provider.get_tracer("opentelemetry.instrumentation.httpx")
        with client.start_as_current_span("GET", kind=SpanKind.CLIENT) as call:
            assert not call.is_recording()
            assert outgoing()["traceparent"].split("-")[1:] == [
                TRACE_ID,
                f"{call.get_span_context().span_id:016x}",
                "01",
            ]


def test_without_a_processor_the_sampling_decision_is_kept() -> None:
    tracing = Tracing("notice", sample_ratio=0.0)
    tracer = tracing.tracer
    # A caller's decision goes on as it came, either way.
    for flags in ("00", "01"):
        with span_from(tracer, "process", f"00-{TRACE_ID}-{CALLER_SPAN}-{flags}") as span:
            assert current_traceparent().endswith(f"-{flags}")  # type: ignore[union-attr]
            assert not span.is_recording()
    # A new trace gets a new trace id, sampled at the ratio (0 here), and so do its children.
    with tracer.start_as_current_span("GET", kind=SpanKind.SERVER) as root:
        root_ctx = root.get_span_context()
        assert root_ctx.is_valid and not root_ctx.trace_flags.sampled
        with tracer.start_as_current_span("job") as child:
            assert child.get_span_context().trace_id == root_ctx.trace_id
    # A root span of no entry kind (a poll loop) is never sampled, but still has an id.
    with tracing.tracer.start_as_current_span("poll") as poll:
        assert poll.get_span_context().is_valid and not poll.get_span_context().trace_flags.sampled
    sampled = Tracing("notice").tracer
    with sampled.start_as_current_span("POST", kind=SpanKind.SERVER) as entry:
        assert entry.get_span_context().trace_flags.sampled and not entry.is_recording()


def test_a_processor_added_later_turns_recording_on_for_tracers_made_before() -> None:
    tracing = Tracing("core")
    tracer = tracing.tracer
    instrumentation = tracing.provider.get_tracer("opentelemetry.instrumentation.httpx")
    exporter = InMemorySpanExporter()
    with span_from(tracer, "model job", caller()["traceparent"]) as before:
        assert not before.is_recording()
        tracing.add_span_processor(SimpleSpanProcessor(exporter))
        # Spans started from now on are recorded, the unrecorded one as their parent.
        with instrumentation.start_as_current_span("GET", kind=SpanKind.CLIENT) as call:
            assert call.is_recording()
    with tracer.start_as_current_span("POST", kind=SpanKind.SERVER) as after:
        assert after.is_recording()
    [client, server] = exporter.get_finished_spans()
    assert (client.name, client.kind, f"{client.context.trace_id:032x}") == (
        "GET",
        SpanKind.CLIENT,
        TRACE_ID,
    )
    assert client.parent is not None
    assert client.parent.span_id == before.get_span_context().span_id
    assert (server.name, server.resource.attributes["service.name"]) == ("POST", "core")


def test_an_exception_in_a_recorded_span_is_recorded_on_it() -> None:
    tracing = Tracing("target")
    exporter = InMemorySpanExporter()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with tracing.tracer.start_as_current_span("apply", kind=SpanKind.CONSUMER):
            raise ValueError("bad event")
    except ValueError:
        pass
    [span] = exporter.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert [event.name for event in span.events] == ["exception"]
