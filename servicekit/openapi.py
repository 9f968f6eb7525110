"""The OpenAPI every service publishes, complete enough to generate tests from it.

FastAPI cannot see what the kernel does around the routes, so :func:`document` adds it
once for every service, instead of per route:

- request bodies: routes read them with :func:`servicekit.http.body_of` (JSON or a form),
  which FastAPI does not look into; each such body is documented from its model, for
  ``application/json`` and ``application/x-www-form-urlencoded``;
- the bearer scheme (``Authorization: Bearer <JWT>``) on every route but health;
- the errors any route may answer (401, 403, 404, 409, 413, 422, 503) with the JSON the
  kernel's error handlers send (FastAPI's own 422 schema is not what is sent).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field

BEARER = "bearer"
PUBLIC_PREFIXES = ("/health", "/metrics")


class FieldError(BaseModel):
    field: str = Field(description="where: body.modelName, query.limit, path.id, a header")
    message: str


class ErrorOut(BaseModel):
    """Every error the services answer: ``detail`` always, the rest where it applies."""

    model_config = ConfigDict(title="Error")

    detail: str
    errors: list[FieldError] | None = Field(None, description="422: each invalid field")
    current_state: str | None = Field(None, alias="currentState", description="409")
    action: str | None = Field(None, description="409: the refused action")


ERRORS = {
    "401": "no valid bearer token",
    "403": "the token does not allow this",
    "404": "not found, or someone else's (the same answer)",
    "409": "illegal transition, or an Idempotency-Key in use",
    "413": "request body too large",
    "422": "invalid request: each invalid field named",
    "503": "database unavailable: retry after Retry-After seconds",
}
FORM = "application/x-www-form-urlencoded"
UNPARSABLE = {
    # uvicorn's own answer, before any route: e.g. a request line past its limit. Through
    # the gateway a client gets the gateway's JSON 400 instead.
    "description": "a request the HTTP server cannot parse (a request line too long, …)",
    "content": {
        "text/plain": {"schema": {"type": "string"}},
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
    },
}


def body_models(dependant: Dependant) -> Iterator[type[BaseModel]]:
    for dependency in dependant.dependencies:
        model = getattr(dependency.call, "body_model", None)
        if model is not None:
            yield model
        yield from body_models(dependency)


def document(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = spec.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        components["securitySchemes"] = {
            BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        }
        add_schema(schemas, ErrorOut)
        for route in iter_route_contexts(app.routes):
            dependant = getattr(route, "dependant", None)
            if not isinstance(dependant, Dependant) or not route.path_format:
                continue
            path = spec["paths"].get(route.path_format, {})
            for method in route.methods or ():
                operation = path.get(method.lower())
                if operation is None:
                    continue
                for model in body_models(dependant):
                    name = add_schema(schemas, model)
                    media = {
                        "schema": {"$ref": f"#/components/schemas/{name}"},
                        "example": example_of(schemas[name]),
                    }
                    operation["requestBody"] = {
                        "required": True,
                        "content": {"application/json": media, FORM: dict(media)},
                    }
                if route.path_format.startswith(PUBLIC_PREFIXES):
                    _add_health_answers(operation.setdefault("responses", {}))
                    continue
                operation["security"] = [{BEARER: []}]
                responses = operation.setdefault("responses", {})
                for status, description in ERRORS.items():
                    responses[status] = {
                        "description": description,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    }
                responses["400"] = UNPARSABLE
        for unused in ("HTTPValidationError", "ValidationError"):
            if not _referenced(spec["paths"], unused):
                schemas.pop(unused, None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


# Readable sample values for the fields the services' bodies share; any other string
# field gets "text". Documentation only: the models validate.
EXAMPLE_STRINGS = {
    "userId": "alice",
    "modelName": "churn-model",
    "type": "lms",
    "reason": "no longer needed",
}


def example_of(schema: dict[str, Any]) -> dict[str, Any]:
    """A body that the model accepts: its own example if it has one, else each required
    field (every field, if none is required) from its schema."""
    if schema.get("examples"):
        return dict(schema["examples"][0])
    properties = schema.get("properties", {})
    names = schema.get("required") or list(properties)
    return {name: _example_value(name, properties[name]) for name in names}


def _example_value(name: str, schema: dict[str, Any]) -> Any:
    if schema.get("examples"):
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    for choice in schema.get("anyOf", ()):
        if choice.get("type") != "null":
            return _example_value(name, choice)
    kind = schema.get("type")
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    return EXAMPLE_STRINGS.get(name, "text")


def _add_health_answers(responses: dict[str, Any]) -> None:
    """Health answers: 503 when a check fails (its body names the checks), 404 for a
    check that does not apply to this service (``/health/outbox`` without an outbox)."""
    for status, description in (("404", "not offered by this service"), ("503", "unhealthy")):
        responses.setdefault(
            status,
            {
                "description": description,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
        )


def add_schema(schemas: dict[str, Any], model: type[BaseModel]) -> str:
    schema = model.model_json_schema(
        by_alias=True, ref_template="#/components/schemas/{model}", mode="validation"
    )
    schemas.update(schema.pop("$defs", {}))
    name = schema.get("title", model.__name__)
    schemas[name] = schema
    return name


def _referenced(paths: dict[str, Any], name: str) -> bool:
    return f"#/components/schemas/{name}" in str(paths)
