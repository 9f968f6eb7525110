"""Spans leave a service over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

The receiver is a real local HTTP server decoding the protobuf a collector or Jaeger
would get on :4318.
"""

from __future__ import annotations

from importlib.metadata import version

import pytest
from fastapi import FastAPI, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from model.bootstrap import build
from model.settings import ModelSettings
from servicekit.tracing import Tracing
from tests.connected.services import running, settings_for
from tests.support import eventually, free_port, serving

pytestmark = pytest.mark.connected


def attributes(values) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in values}


async def test_spans_are_exported_over_otlp_with_the_service_resource(
    model_db: str, topics: str
) -> None:
    received: list[ExportTraceServiceRequest] = []

    receiver = FastAPI()

    @receiver.post("/v1/traces")
    async def collect(request: Request) -> Response:
        assert request.headers["content-type"] == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        received.append(message)
        return Response(content=b"", media_type="application/x-protobuf")

    port = free_port()
    async with serving(receiver, port):
        settings = settings_for(
            ModelSettings,
            model_db,
            topics,
            otel_exporter_otlp_endpoint=f"http://127.0.0.1:{port}",
            service_version="1.2.3",
        )
        async with running(build, settings) as (client, runtime):
            created = await client.post("/models", json={"userId": "test", "modelName": "Otlp"})
            assert created.status_code == 201
            await runtime.tracing.flush()

            def spans() -> list[tuple[dict[str, str], str]]:
                return [
                    (attributes(rs.resource.attributes), span.name)
                    for message in received
                    for rs in message.resource_spans
                    for ss in rs.scope_spans
                    for span in ss.spans
                ]

            async def exported() -> bool:
                await runtime.tracing.flush()
                names = {name for _, name in spans()}
                return {"POST /models", "publish model.events"} <= names

            await eventually(exported, what="the request's and the publish's spans")

    resources = {tuple(sorted(resource.items())) for resource, _ in spans()}
    [resource] = [dict(r) for r in resources]
    assert resource["service.name"] == "model"
    assert resource["service.namespace"] == "nocode"
    assert resource["service.version"] == "1.2.3"
    assert resource["service.instance.id"]
    # Without SERVICE_VERSION, the version is the installed package's.
    default = Tracing("model").provider.resource.attributes["service.version"]
    assert default == version("nocode")
