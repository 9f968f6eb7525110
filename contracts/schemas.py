"""Each event contract's JSON schema: the shape of its record value on the wire.

One function, used by the AsyncAPI document (``contracts.asyncapi``), the published
copies (``contracts.publish``) and the compatibility check (``contracts.compat``), so
the three cannot disagree.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from contracts.base import Event

# Importing the context modules registers every contract.
from contracts import core, model, target  # noqa: F401  # isort: skip

JsonSchema = dict[str, Any]


def events() -> list[type[Event]]:
    """Every registered contract, in a stable order (topic, then name, then version)."""
    return sorted(Event.registry.values(), key=lambda c: (c.topic, c.event_type(), c.version))


def schema_id(contract: type[Event]) -> str:
    """``Requested.v1``: the name of a contract version's published schema."""
    return f"{contract.event_type()}.v{contract.version}"


def payload_schema(contract: type[Event], ref_template: str = "#/$defs/{model}") -> JsonSchema:
    """The JSON schema of ``contract``'s record value (``Event.to_value``).

    ``eventType`` is added (it is written from the class, not a field) and ``eventId``
    taken out (it travels as the ``ce_id`` header). Required are the fields a reader
    needs: those without a default.
    """
    schema = contract.model_json_schema(by_alias=True, ref_template=ref_template)
    properties = {
        "eventType": {"const": contract.event_type(), "type": "string"},
        **{k: v for k, v in schema["properties"].items() if k != "eventId"},
    }
    required = ["eventType", *(r for r in schema.get("required", ()) if r != "eventId")]
    out: JsonSchema = {
        "title": schema_id(contract),
        "type": "object",
        "description": inspect.cleandoc(contract.__doc__ or f"The {contract.event_type()} event."),
        "properties": properties,
        "required": required,
        "x-ce-type": contract.ce_type(),
        "x-topic": contract.topic,
        "x-version": contract.version,
    }
    if "$defs" in schema:
        out["$defs"] = schema["$defs"]
    return out


def unhandled_versions(
    handled: Iterable[type[Event]], registry: Mapping[str, type[Event]] | None = None
) -> list[str]:
    """The versions of events a consumer handles in some version but not in this one: a
    consumer of an event must handle every version still registered (``ce_type``s)."""
    registry = Event.registry if registry is None else registry
    handled = set(handled)
    names = {(c.context, c.event_type()) for c in handled}
    return sorted(
        ce_type
        for ce_type, c in registry.items()
        if (c.context, c.event_type()) in names and c not in handled
    )
