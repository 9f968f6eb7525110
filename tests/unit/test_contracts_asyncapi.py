"""The events' AsyncAPI document: valid AsyncAPI 3.0, and every topic and contract in it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest

from contracts import core, model, target
from contracts.asyncapi import document
from contracts.base import Event
from contracts.schemas import payload_schema
from contracts.topics import ALL_TOPICS

# Installed by `make install` from npm's @asyncapi/specs (see the Makefile).
SPEC = Path(sys.prefix) / "share/asyncapi-specs/schemas/3.0.0-without-$id.json"


@pytest.fixture(scope="module")
def asyncapi_schema() -> dict:
    assert SPEC.exists(), f"{SPEC} is missing: run `make install`"
    return json.loads(SPEC.read_text())


def errors(schema: dict, doc: dict) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]


def test_the_document_is_valid_asyncapi_3(asyncapi_schema: dict) -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert errors(asyncapi_schema, doc) == []


def test_the_validation_can_fail(asyncapi_schema: dict) -> None:
    doc = document()
    doc["channels"]["modelEvents"]["address"] = 42
    del doc["info"]["title"]
    assert len(errors(asyncapi_schema, doc)) >= 2


def test_every_topic_is_a_channel_and_every_contract_a_message() -> None:
    doc = document()
    assert sorted(c["address"] for c in doc["channels"].values()) == sorted(ALL_TOPICS)
    ce_types = {m.get("x-ce-type") for m in doc["components"]["messages"].values()}
    assert set(Event.registry) <= ce_types
    model_events = doc["channels"]["modelEvents"]["messages"]
    assert {"Requested_v1", "Approved_v1", "StateChanged_v1"} <= set(model_events)
    assert "ModelCompleted_v1" in doc["channels"]["coreEvents"]["messages"]
    # nested types land in components/schemas and are referenced from there
    assert "Check" in doc["components"]["schemas"]
    completed = doc["components"]["schemas"]["ModelCompleted.v1"]
    assert "#/components/schemas/Check" in json.dumps(completed)


@pytest.mark.parametrize(
    "event",
    [
        model.Requested(id=15, state="requested", user_id="test", model_name="TestModel5"),
        model.Approved(id=1, state="approved", user_id="u", model_name="m", actor="admin"),
        target.TargetRequested(
            id=2, state="requested", user_id="u", type="sms", model_request_id=1
        ),
        core.ModelProgressed(id=3, request_id="1", step=1, total_steps=5, batch=1),
        core.ModelCompleted(id=3, request_id="1", check=core.Check(outcome="complete")),
    ],
    ids=lambda e: e.event_type(),
)
def test_events_on_the_wire_match_their_schema(event: Event) -> None:
    jsonschema.validate(event.to_value(), payload_schema(type(event)))


def test_a_value_missing_a_required_field_does_not_match() -> None:
    value = model.Requested(id=1, state="requested", user_id="u", model_name="m").to_value()
    del value["modelName"]
    with pytest.raises(jsonschema.ValidationError, match="modelName"):
        jsonschema.validate(value, payload_schema(model.Requested))
