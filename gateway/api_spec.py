"""The OpenAPI of the gateway's own endpoints: tokens, menus, users, the documents.

The handlers (gateway.token_routes, gateway.user_routes) read their bodies by hand, JSON
or a form; the models here describe what they accept and answer, with examples, and
:func:`own_paths` lists
each operation with the errors it can answer in the services' shape
(``servicekit.openapi.ErrorOut``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.authentication import TOKEN_HINT
from gateway.user_rules import KNOWN_ROLES, PASSWORD_MAX, PASSWORD_MIN, USERNAME_MAX
from servicekit.openapi import BEARER, ERRORS, FORM, ErrorOut, add_schema

Role = Literal[KNOWN_ROLES]  # type: ignore[valid-type]


class TokenRequest(BaseModel):
    """OAuth2's password grant: what ``POST /auth/token`` reads."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"username": "alice", "password": "a-long-passphrase"}]}
    )
    username: str = Field(max_length=USERNAME_MAX)
    password: str
    grant_type: Literal["password"] | None = None
    scope: str | None = Field(None, description="accepted and ignored")
    client_id: str | None = Field(None, description="accepted and ignored")
    client_secret: str | None = Field(None, description="accepted and ignored")


class TokenOut(BaseModel):
    access_token: str = Field(description="a signed JWT (EdDSA); send as Authorization: Bearer")
    token_type: Literal["bearer"]
    expires_in: int = Field(description="seconds")
    refresh_token: str = Field(description="one use: POST /auth/refresh")
    refresh_expires_in: int = Field(description="seconds")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"refresh_token": "r1.…"}]})
    refresh_token: str
    grant_type: Literal["refresh_token"] | None = None
    scope: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


class LogoutRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"refresh_token": "r1.…"}]})
    refresh_token: str | None = Field(
        None, description="the session to end; without it, the bearer token's session"
    )


class Menu(BaseModel):
    id: str
    title: str
    method: str
    path: str


class MenusOut(BaseModel):
    username: str
    roles: list[str]
    menus: list[Menu]


class UserOut(BaseModel):
    model_config = ConfigDict(title="User")
    username: str
    roles: list[Role]
    disabled: bool
    createdAt: str = Field(json_schema_extra={"format": "date-time"})
    updatedAt: str = Field(json_schema_extra={"format": "date-time"})


class NewUser(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"username": "bob", "password": "another-long-passphrase", "roles": ["user"]}
            ]
        }
    )
    username: str = Field(min_length=1, max_length=USERNAME_MAX)
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    roles: list[Role] = Field(
        default=["user"], description="in a form: roles=admin,user or roles repeated"
    )


class NewPassword(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"password": "a-new-long-passphrase"}]}
    )
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


EXTRA_ERRORS = {
    "429": "rate limited: retry after Retry-After seconds",
    "502": "the upstream service failed",
    "504": "the upstream service timed out",
}
OWN_ERRORS = {**ERRORS, **EXTRA_ERRORS}
OWN_ERRORS["401"] = f"no valid bearer token: {TOKEN_HINT}"


def error_answers(*statuses: str, **described: str) -> dict[str, Any]:
    """The error answers ``statuses`` (described as everywhere, or as ``described``)."""
    ref = {"$ref": "#/components/schemas/Error"}
    answers = {}
    for status in statuses:
        text = described.get(f"s{status}", OWN_ERRORS[status])
        answers[status] = {"description": text, "content": {"application/json": {"schema": ref}}}
    return answers


def _ok(name: str | None, status: str = "200", array: bool = False) -> dict[str, Any]:
    if name is None:
        return {status: {"description": "done"}}
    schema: dict[str, Any] = {"$ref": f"#/components/schemas/{name}"}
    if array:
        schema = {"type": "array", "items": schema}
    return {status: {"description": "OK", "content": {"application/json": {"schema": schema}}}}


def _body(name: str, model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    examples = (model.model_config.get("json_schema_extra") or {}).get("examples", [])  # type: ignore[union-attr]
    media: dict[str, Any] = {"schema": ref}
    if examples:
        media["example"] = examples[0]
    return {"required": required, "content": {FORM: dict(media), "application/json": dict(media)}}


def _param(name: str, where: str = "path", **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema or {"type": "string"},
    }


def own_paths() -> tuple[dict[str, Any], dict[str, Any]]:
    """The gateway's own paths, and the component schemas they refer to."""
    schemas: dict[str, Any] = {}
    names = {
        model: add_schema(schemas, model)
        for model in (
            ErrorOut,
            TokenRequest,
            TokenOut,
            RefreshRequest,
            LogoutRequest,
            MenusOut,
            UserOut,
            NewUser,
            NewPassword,
        )
    }
    secured = [{BEARER: []}]
    user = _param("username", maxLength=USERNAME_MAX)
    role = _param("role", enum=list(KNOWN_ROLES))
    admin_only = {"s403": "only an enabled admin may manage users"}

    def op(summary: str, tag: str, responses: dict[str, Any], **rest: Any) -> dict[str, Any]:
        return {"tags": [tag], "summary": summary, "responses": responses, **rest}

    def admin(summary: str, ok: dict[str, Any], *errors: str, **rest: Any) -> dict[str, Any]:
        statuses = ("401", "403", "404", *errors, "429", "503")
        answers = {**ok, **error_answers(*statuses, **admin_only)}
        return op(summary, "users", answers, security=secured, parameters=[user], **rest)

    paths: dict[str, Any] = {
        "/auth/token": {
            "post": op(
                "A bearer token (and a refresh token) for a username and password",
                "auth",
                {
                    **_ok(names[TokenOut]),
                    **error_answers(
                        "401", "422", "429", "503", s401="invalid username or password"
                    ),
                },
                requestBody=_body(names[TokenRequest], TokenRequest),
            )
        },
        "/auth/refresh": {
            "post": op(
                "A new token pair for a refresh token (which is used up)",
                "auth",
                {
                    **_ok(names[TokenOut]),
                    **error_answers("401", "422", "429", "503", s401="refresh token refused"),
                },
                requestBody=_body(names[RefreshRequest], RefreshRequest),
            )
        },
        "/auth/logout": {
            "post": op(
                "End the session of a refresh token, or of the bearer token",
                "auth",
                {
                    **_ok(None, "204"),
                    **error_answers(
                        "401", "422", "429", "503", s401="no session to end, or a refused token"
                    ),
                },
                requestBody=_body(names[LogoutRequest], LogoutRequest, required=False),
                security=[{BEARER: []}, {}],
            )
        },
        "/menus": {
            "get": op(
                "The menus the caller's roles may see",
                "menus",
                {**_ok(names[MenusOut]), **error_answers("401", "429")},
                security=secured,
            )
        },
        "/users": {
            "get": op(
                "Every user (admins only)",
                "users",
                {
                    **_ok(names[UserOut], array=True),
                    **error_answers("401", "403", "422", "429", "503", **admin_only),
                },
                security=secured,
                parameters=[
                    _param("limit", "query", type="integer", minimum=1, maximum=1000, default=100),
                    _param("offset", "query", type="integer", minimum=0, default=0),
                ],
            ),
            "post": op(
                "Create a user (admins only)",
                "users",
                {
                    **_ok(names[UserOut], "201"),
                    **error_answers("401", "403", "409", "422", "429", "503", **admin_only),
                },
                security=secured,
                requestBody=_body(names[NewUser], NewUser),
            ),
        },
        "/users/{username}": {"get": admin("One user", _ok(names[UserOut]))},
        "/users/{username}/disable": {
            "put": admin("Disable a user: their tokens stop working", _ok(names[UserOut]), "409")
        },
        "/users/{username}/enable": {"put": admin("Enable a user", _ok(names[UserOut]))},
        "/users/{username}/password": {
            "put": admin(
                "Set a user's password (ends their sessions)",
                _ok(names[UserOut]),
                "422",
                requestBody=_body(names[NewPassword], NewPassword),
            )
        },
        "/users/{username}/roles/{role}": {
            method: admin(summary, _ok(names[UserOut]), "409", "422")
            for method, summary in (("put", "Grant a role"), ("delete", "Revoke a role"))
        },
    }
    for operation in paths["/users/{username}/roles/{role}"].values():
        operation["parameters"] = [user, role]
    documents = {
        "/openapi.json": "This document: the gateway's paths and every service's",
        "/asyncapi.json": "The AsyncAPI document of every topic and event",
    }
    for path, summary in documents.items():
        paths[path] = {"get": op(summary, "documents", {"200": _json_object("the document")})}
    paths["/health/live"] = {"get": op("Alive", "health", {"200": _json_object("alive")})}
    paths["/health/ready"] = {
        "get": op(
            "Ready: the gateway can call the services",
            "health",
            {"200": _json_object("ready"), "503": _json_object("not ready")},
        )
    }
    return paths, schemas


def _json_object(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
