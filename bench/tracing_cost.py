"""CPU per span of a service's tracer, with and without something reading the spans.

    .venv/bin/python -m bench.tracing_cost [--spans 20000]

Each pattern is what a service does per request or event: a SERVER span continuing the
caller's headers (named and given its route and status once served, as ``ServerSpans``
and the gateway do), a CONSUMER span from a record's ``traceparent`` with its messaging
attributes (``span_from``), and a CLIENT span inside it with the headers injected (what
the httpx and aiohttp instrumentations do). Measured for: the plain SDK provider with no
processor (spans recorded, then dropped: how services ran before), the service provider
with no processor (unrecorded spans), and both with a batch processor whose exporter
drops the batches (recorded and handed on).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import SpanKind, Tracer

from servicekit.tracing import EntrySpans, Tracing, span_from

HEADERS = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "host": "127.0.0.1:8000",
    "content-type": "application/json",
    "authorization": "Bearer x",
}
RECORD_ATTRIBUTES = {
    "messaging.system": "kafka",
    "messaging.operation.type": "process",
    "messaging.destination.name": "model.events",
    "messaging.destination.partition.id": "1",
    "messaging.consumer.group.name": "notice",
    "messaging.kafka.offset": 42,
    "messaging.kafka.message.key": "17",
    "messaging.message.id": "b5a0c0e8-0b8e-4b7e-9a55-5f0f4a3e2d11",
    "cloudevents.event_type": "nocode.model.Requested",
}


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def server(tracer: Tracer) -> None:
    with tracer.start_as_current_span(
        "POST",
        context=propagate.extract(HEADERS),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "url.path": "/models"},
    ) as span:
        span.update_name("POST /models")
        span.set_attribute("http.route", "/models")
        span.set_attribute("http.response.status_code", 201)


def consumer_and_client(tracer: Tracer) -> None:
    with span_from(
        tracer, "process model.events", HEADERS["traceparent"], kind=SpanKind.CONSUMER,
        attributes=RECORD_ATTRIBUTES,
    ) as span:  # fmt: skip
        with tracer.start_as_current_span(
            "POST", kind=SpanKind.CLIENT, attributes={"http.request.method": "POST"}
        ) as call:
            propagate.inject({})
            call.set_attribute("http.response.status_code", 200)
        span.set_attribute("nocode.outcome", "applied")


def plain_sdk(processor: bool) -> Tracer:
    provider = TracerProvider(sampler=ParentBased(EntrySpans()), shutdown_on_exit=False)
    if processor:
        provider.add_span_processor(BatchSpanProcessor(Discard()))
    return provider.get_tracer("bench")


def service(processor: bool) -> Tracer:
    tracing = Tracing("bench")
    if processor:
        tracing.add_span_processor(BatchSpanProcessor(Discard()))
    return tracing.tracer


def per_span_us(pattern: Callable[[Tracer], None], tracer: Tracer, n: int, spans: int) -> float:
    for _ in range(n // 10):
        pattern(tracer)  # warm up
    started = time.process_time()
    for _ in range(n):
        pattern(tracer)
    return (time.process_time() - started) / (n * spans) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20000, help="repetitions of each pattern")
    args = parser.parse_args()
    modes = {
        "SDK provider, no processor (before)": plain_sdk(False),
        "service provider, no processor (unrecorded)": service(False),
        "SDK provider, batch processor (before)": plain_sdk(True),
        "service provider, batch processor": service(True),
    }
    print("| tracer | SERVER span, µs CPU | CONSUMER + CLIENT, µs CPU per span |")
    print("|---|---:|---:|")
    for name, tracer in modes.items():
        served = per_span_us(server, tracer, args.spans, 1)
        consumed = per_span_us(consumer_and_client, tracer, args.spans, 2)
        print(f"| {name} | {served:.1f} | {consumed:.1f} |")


if __name__ == "__main__":
    main()
