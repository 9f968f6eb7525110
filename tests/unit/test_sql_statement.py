"""servicekit.sql.Statement: what it compiles, what it refuses, the arguments it builds."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert

from servicekit.outbox import OUTBOX
from servicekit.sql import Statement, constant

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False),
    Column("kind", String(20), default="plain"),  # a Python-side default
)


def test_a_statement_takes_its_parameters_by_name_in_the_order_of_its_sql() -> None:
    s = Statement(
        select(things).where(things.c.name == bindparam("name"), things.c.id > bindparam("above"))
    )
    assert "things.name = $1::VARCHAR AND things.id > $2::INTEGER" in s.sql
    assert s.args({"above": 3, "name": "a"}) == ["a", 3]


def test_a_value_fixed_in_the_statement_needs_no_parameter_and_a_missing_one_is_named() -> None:
    s = Statement(select(things).where(things.c.id == bindparam("id")).limit(5))
    assert s.args({"id": 1}) == [1, 5]
    with pytest.raises(KeyError, match=":id"):
        s.args({})


def test_json_values_are_serialized_as_sqlalchemy_would() -> None:
    columns = ("event_id", "topic", "key", "ce_type", "source", "occurred_at", "payload")
    s = Statement(insert(OUTBOX), columns=columns)
    assert s.sql.startswith("INSERT INTO outbox (event_id, topic, key, ce_type, source, ")
    assert "RETURNING" not in s.sql  # the generated key is not sent back unasked
    args = s.args({c: c for c in columns} | {"payload": {"b": 1, "a": [2]}})
    assert json.loads(args[columns.index("payload")]) == {"b": 1, "a": [2]}


def test_an_in_list_given_per_call_is_refused_with_what_to_write_instead() -> None:
    with pytest.raises(ValueError, match=r"use = ANY\(:ids\)"):
        Statement(select(things).where(things.c.id.in_(bindparam("ids", expanding=True))))


def test_a_python_side_default_is_refused() -> None:
    with pytest.raises(ValueError, match="Python-side column default"):
        Statement(insert(things), columns=("id", "name"))


def test_a_constant_is_written_into_the_sql_and_only_plain_words_are() -> None:
    s = Statement(select(things.c.id).where(things.c.kind == constant("pending")))
    assert s.sql.endswith("WHERE things.kind = 'pending'") and s.args(None) == []
    with pytest.raises(ValueError, match="not a plain word"):
        constant("x' OR '1'='1")
