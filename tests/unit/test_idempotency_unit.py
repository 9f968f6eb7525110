"""The pure parts of Idempotency-Key and of telling a database outage from a failed query."""

from __future__ import annotations

import asyncpg
import pytest
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc

from model.bootstrap import build
from model.settings import ModelSettings
from servicekit.db import database_unavailable
from servicekit.idempotency import HEADER, fingerprint, parse_key
from tests.support import AUTH_SETTINGS


def test_a_key_is_taken_as_sent_or_as_a_structured_field_string() -> None:
    assert parse_key([]) is None
    assert (
        parse_key(["8e03978e-40d5-43e8-bc93-6894a57f9324"])
        == "8e03978e-40d5-43e8-bc93-6894a57f9324"
    )
    assert parse_key(['"abc"']) == "abc"
    assert parse_key(['"a \\"b\\""']) == 'a "b"'
    assert parse_key(["k" * 255]) == "k" * 255


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([""], "must not be empty"),
        (['""'], "must not be empty"),
        (["k" * 256], "at most 255"),
        (["tab\there"], "printable ASCII"),
        (["clé"], "printable ASCII"),
        (["a", "b"], "send the header once"),
    ],
)
def test_an_unusable_key_is_a_422_naming_the_header(values: list[str], message: str) -> None:
    with pytest.raises(RequestValidationError) as refused:
        parse_key(values)
    (error,) = refused.value.errors()
    assert error["loc"] == (HEADER,) and message in error["msg"]


def test_the_fingerprint_is_the_request_not_its_spelling() -> None:
    same = fingerprint("POST", "/models", {"userId": "test", "modelName": "m"})
    assert fingerprint("POST", "/models", {"modelName": "m", "userId": "test"}) == same
    assert fingerprint("POST", "/models", {"userId": "test", "modelName": "n"}) != same
    assert fingerprint("PUT", "/models", {"userId": "test", "modelName": "m"}) != same
    assert fingerprint("POST", "/targets", {"userId": "test", "modelName": "m"}) != same


def wrapped(error: Exception) -> sa_exc.DBAPIError:
    """What SQLAlchemy raises mid-statement: its error around the driver's."""
    try:
        raise error
    except Exception as exc:
        return sa_exc.DBAPIError("SELECT 1", None, exc)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        sa_exc.TimeoutError("QueuePool limit reached"),
        wrapped(asyncpg.CannotConnectNowError("the database system is shutting down")),
        wrapped(ConnectionResetError()),
    ],
)
def test_an_unreachable_database_is_told_apart(error: Exception) -> None:
    assert database_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),
        wrapped(asyncpg.exceptions.SerializationError("could not serialize")),
        ValueError("a bug"),
    ],
)
def test_a_failing_statement_is_not_an_outage(error: Exception) -> None:
    assert not database_unavailable(error)


def test_the_header_is_documented_on_every_command_and_no_read() -> None:
    settings = ModelSettings(
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none", **AUTH_SETTINGS
    )
    app, _ = build(settings)
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if any(p["name"] == HEADER and p["in"] == "header" for p in operation.get("parameters", []))
    }
    assert documented == {
        ("POST", "/models"),
        ("PUT", "/models"),
        ("PUT", "/models/{id}"),
        ("PUT", "/models/{id}/reject"),
        ("PUT", "/models/{id}/cancel"),
    }
