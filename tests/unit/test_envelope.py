"""CloudEvents binary-mode envelope: encoding and every way decoding refuses a record."""

from __future__ import annotations

import orjson
import pytest

from contracts.model import Requested
from servicekit.envelope import Envelope, UndecodableMessage, decode, header_map

EVENT = Requested(id=15, state="requested", user_id="test", model_name="TestModel5")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_round_trip_keeps_every_attribute() -> None:
    env = Envelope.wrap(EVENT, "/nocode/model", TRACEPARENT)
    back = decode(env.value(), env.headers())
    assert back == env
    assert back.event == EVENT and back.event.event_id == EVENT.event_id


def test_headers_are_the_cloudevents_kafka_binding() -> None:
    headers = header_map(Envelope.wrap(EVENT, "/nocode/model", TRACEPARENT).headers())
    assert headers == {
        "ce_specversion": "1.0",
        "ce_id": EVENT.event_id,
        "ce_type": "nocode.model.Requested",
        "ce_source": "/nocode/model",
        "ce_time": headers["ce_time"],
        "ce_subject": "15",
        "content-type": "application/json",
        "traceparent": TRACEPARENT,
    }
    assert headers["ce_time"].endswith("Z")


def test_no_traceparent_header_without_a_trace() -> None:
    assert "traceparent" not in header_map(Envelope.wrap(EVENT, "/nocode/model").headers())


def headers_without(name: str) -> list[tuple[str, bytes]]:
    return [h for h in Envelope.wrap(EVENT, "/nocode/model").headers() if h[0] != name]


@pytest.mark.parametrize(
    ("value", "headers", "message"),
    [
        (b"{}", headers_without("ce_id"), "missing header ce_id"),
        (b"{}", headers_without("ce_type"), "missing header ce_type"),
        (b"{}", [*headers_without("ce_type"), ("ce_type", b"nocode.x.Nope")], "unknown event type"),
        (b"{oops", headers_without(""), "invalid nocode.model.Requested value"),
        (
            orjson.dumps({**EVENT.to_value(), "userId": None}),
            headers_without(""),
            "invalid nocode.model.Requested value",
        ),
        (
            orjson.dumps({**EVENT.to_value(), "eventType": "Approved"}),
            headers_without(""),
            "does not match ce_type",
        ),
    ],
)
def test_undecodable_records_are_refused_with_the_reason(
    value: bytes, headers: list[tuple[str, bytes]], message: str
) -> None:
    with pytest.raises(UndecodableMessage, match=message):
        decode(value, headers)
