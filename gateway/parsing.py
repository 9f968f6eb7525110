"""Reading the gateway's own request bodies (JSON or form) so that no body makes a 500.

JSON goes through :func:`servicekit.http.loads_json` (a depth limit: deeply nested JSON
was a RecursionError), url-encoded forms through :func:`servicekit.http.form_pairs`
(invalid UTF-8 is refused, not stored as replacement characters), and a handler names the
fields it takes (:func:`only`): any other is a 422 naming it, as in the services.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.user_rules import InvalidField
from servicekit.http import (
    FORM_TYPES,
    MAX_OFFSET,
    InvalidInput,
    InvalidJson,
    form_pairs,
    loads_json,
)

__all__ = ["MAX_OFFSET", "is_form", "only", "read_fields", "required", "required_str"]


def is_form(request: web.Request) -> bool:
    return request.content_type.lower() in FORM_TYPES


async def read_fields(request: web.Request) -> dict[str, Any]:
    """The body's fields, from JSON or a form (the seed's clients send both).

    Anything that is not a form is read as JSON, as the services do. A form field given
    more than once becomes a list.
    """
    if request.content_type.lower() == "application/x-www-form-urlencoded":
        try:
            pairs = form_pairs(await request.read())
        except InvalidInput as exc:
            raise InvalidField(".".join(exc.loc) or "body", exc.message) from exc
        return _fields(pairs)
    if is_form(request):
        form = await request.post()
        return _fields([(name, value) for name, value in form.items()])
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = loads_json(raw)
    except InvalidJson as exc:
        raise InvalidField("body", str(exc)) from exc
    if not isinstance(data, dict):
        raise InvalidField("body", "must be a JSON object")
    return data


def _fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name in fields:
            before = fields[name]
            fields[name] = [*before, value] if isinstance(before, list) else [before, value]
        else:
            fields[name] = value
    return fields


def only(fields: dict[str, Any], *names: str) -> dict[str, Any]:
    """``fields``, when it holds no field but ``names``; else a 422 naming the first other."""
    for name in fields:
        if name not in names:
            raise InvalidField(name, "unknown field")
    return fields


def required(fields: dict[str, Any], name: str) -> Any:
    value = fields.get(name)
    if value is None or value == "":
        raise InvalidField(name, "field required")
    return value


def required_str(fields: dict[str, Any], name: str) -> str:
    value = required(fields, name)
    if not isinstance(value, str):
        raise InvalidField(name, "must be a string")
    return value
