"""The AsyncAPI 3.0 document of every topic and event, generated from the contracts.

    python -m contracts.asyncapi > asyncapi.json

Nothing here is written by hand but the prose: each channel is a topic of
``contracts.topics``, each message a registered contract with the schema
``contracts.schemas`` gives it, so the document cannot drift from the code. The gateway
serves it at ``GET /asyncapi.json``.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from contracts.base import Event
from contracts.schemas import JsonSchema, events, payload_schema, schema_id
from contracts.topics import CONSUMING_SERVICES, EVENT_TOPICS, dead_letter_topic

KAFKA_BINDING = "0.5.0"
SCHEMAS = "#/components/schemas/"

CLOUDEVENT_HEADERS: JsonSchema = {
    "type": "object",
    "description": "CloudEvents Kafka protocol binding, binary content mode (servicekit.envelope)",
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "the event id; consumers skip ids applied"},
        "ce_type": {"type": "string", "description": "nocode.<context>.<Event>[.v<N>]"},
        "ce_source": {"type": "string", "description": "the producing service"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "the request id (the record key)"},
        "content-type": {"type": "string", "const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context of the publish"},
    },
    "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type"],
}

DEAD_LETTER_HEADERS: JsonSchema = {
    "type": "object",
    "description": "The original record's headers, plus why and where it failed",
    "properties": {
        "dlt_error": {"type": "string"},
        "dlt_original_topic": {"type": "string"},
        "dlt_original_partition": {"type": "string"},
        "dlt_original_offset": {"type": "string"},
        "dlt_consumer_group": {"type": "string"},
        "dlt_attempts": {"type": "string"},
    },
    "required": ["dlt_error", "dlt_original_topic"],
}


def _channel_id(topic: str) -> str:
    first, _, rest = topic.partition(".")
    return first + rest.capitalize()  # model.events -> modelEvents, core.dlt -> coreDlt


def _message(contract: type[Event]) -> dict[str, Any]:
    name = schema_id(contract)
    return {
        "name": contract.event_type(),
        "title": f"{contract.event_type()} (version {contract.version})",
        "summary": payload_schema(contract)["description"].split("\n\n")[0],
        "contentType": "application/json",
        "headers": {"$ref": f"{SCHEMAS}CloudEventHeaders"},
        "payload": {"$ref": f"{SCHEMAS}{name}"},
        "correlationId": {"location": "$message.header#/ce_subject"},
        "bindings": {"kafka": {"key": {"type": "string"}, "bindingVersion": KAFKA_BINDING}},
        "x-ce-type": contract.ce_type(),
    }


def _message_id(contract: type[Event]) -> str:
    return schema_id(contract).replace(".", "_")  # component keys allow no dots


def _package_version() -> str:
    try:
        return version("nocode")
    except PackageNotFoundError:
        return "0.0.0"


def document() -> dict[str, Any]:
    contracts = events()
    schemas: dict[str, JsonSchema] = {
        "CloudEventHeaders": CLOUDEVENT_HEADERS,
        "DeadLetterHeaders": DEAD_LETTER_HEADERS,
    }
    for contract in contracts:
        schema = payload_schema(contract, ref_template=SCHEMAS + "{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[schema_id(contract)] = schema
    messages: dict[str, Any] = {_message_id(c): _message(c) for c in contracts}
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "A record a consumer gave up on",
        "summary": "The original key, value and headers, parked after the consumer's attempts",
        "headers": {"$ref": f"{SCHEMAS}DeadLetterHeaders"},
        "payload": {"description": "the original record's value, unchanged"},
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in EVENT_TOPICS:
        own = [c for c in contracts if c.topic == topic]
        cid = _channel_id(topic)
        channels[cid] = {
            "address": topic,
            "title": topic,
            "description": f"Events of the {topic.split('.')[0]} context, keyed by request id",
            "messages": {
                _message_id(c): {"$ref": f"#/components/messages/{_message_id(c)}"} for c in own
            },
        }
        operations[f"publish{cid[0].upper()}{cid[1:]}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": f"{topic.split('.')[0]} publishes through its transactional outbox",
            "messages": [{"$ref": f"#/channels/{cid}/messages/{_message_id(c)}"} for c in own],
        }
    for service in CONSUMING_SERVICES:
        topic = dead_letter_topic(service)
        cid = _channel_id(topic)
        channels[cid] = {
            "address": topic,
            "title": topic,
            "description": f"Records {service} could not process (dead letters)",
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        }
        operations[f"deadLetter{cid[0].upper()}{cid[1:]}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/DeadLetter"}],
        }
    return {
        "asyncapi": "3.0.0",
        "id": "urn:nocode:events",
        "info": {
            "title": "nocode events",
            "version": _package_version(),
            "description": (
                "Every topic and event of the nocode platform, generated from contracts/. "
                "Values are the events' JSON; CloudEvents attributes travel as headers."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the embedded broker of `nocode up` (KAFKA_BOOTSTRAP_SERVERS)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


if __name__ == "__main__":
    json.dump(document(), sys.stdout, indent=2)
    sys.stdout.write("\n")
