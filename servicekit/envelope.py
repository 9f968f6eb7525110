"""CloudEvents Kafka protocol binding, binary content mode.

The envelope's attributes travel as ``ce_*`` headers (plus the W3C ``traceparent``
header, which is also what OpenTelemetry's propagators read); the record value is
the event's own JSON in the seed's shape and the record key is the request id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from contracts import Event, contract_for

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

Headers = list[tuple[str, bytes]]


class UndecodableMessage(ValueError):
    """A record that is not a well-formed event of a known contract: never retried."""


@dataclass(frozen=True)
class Envelope:
    id: str
    type: str
    source: str
    time: datetime
    subject: str
    traceparent: str | None
    event: Event

    @classmethod
    def wrap(cls, event: Event, source: str, traceparent: str | None = None) -> Envelope:
        return cls(
            id=event.event_id,
            type=event.ce_type(),
            source=source,
            time=datetime.fromtimestamp(event.timestamp / 1000, tz=UTC),
            subject=event.key,
            traceparent=traceparent,
            event=event,
        )

    def headers(self) -> Headers:
        return encode_headers(
            id=self.id,
            type=self.type,
            source=self.source,
            time=self.time,
            subject=self.subject,
            traceparent=self.traceparent,
        )

    def value(self) -> bytes:
        return orjson.dumps(self.event.to_value())


def encode_headers(
    *, id: str, type: str, source: str, time: datetime, subject: str, traceparent: str | None
) -> Headers:
    headers: Headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", id.encode()),
        ("ce_type", type.encode()),
        ("ce_source", source.encode()),
        ("ce_time", time.astimezone(UTC).isoformat().replace("+00:00", "Z").encode()),
        ("ce_subject", subject.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return headers


def header_map(headers: Any) -> dict[str, str]:
    return {k: (v.decode("utf-8", "replace") if v is not None else "") for k, v in headers or ()}


def decode(value: bytes | None, headers: Any) -> Envelope:
    """Turn a consumed record into an envelope, or raise :class:`UndecodableMessage`."""
    return decode_mapped(value, header_map(headers))


def decode_mapped(value: bytes | None, attrs: dict[str, str]) -> Envelope:
    """:func:`decode` of a record whose headers the caller mapped already (:func:`header_map`)."""
    for required in ("ce_id", "ce_type", "ce_source"):
        if not attrs.get(required):
            raise UndecodableMessage(f"missing header {required}")
    contract = contract_for(attrs["ce_type"])
    if contract is None:
        raise UndecodableMessage(f"unknown event type {attrs['ce_type']}")
    try:
        payload = orjson.loads(value or b"")
        event = contract.model_validate({**payload, "event_id": attrs["ce_id"]})
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise UndecodableMessage(f"invalid {attrs['ce_type']} value: {exc}") from exc
    if payload.get("eventType") != contract.event_type():
        raise UndecodableMessage(
            f"eventType {payload.get('eventType')!r} does not match ce_type {attrs['ce_type']}"
        )
    time_attr = attrs.get("ce_time")
    return Envelope(
        id=attrs["ce_id"],
        type=attrs["ce_type"],
        source=attrs["ce_source"],
        time=datetime.fromisoformat(time_attr) if time_attr else datetime.now(UTC),
        subject=attrs.get("ce_subject", event.key),
        traceparent=attrs.get("traceparent"),
        event=event,
    )
