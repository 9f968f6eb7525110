"""servicekit.deferred: the one statement the writes waiting for a commit make, and the
conditional form of each write (checked on a real PostgreSQL by
tests/connected/test_deferred_condition.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert

from servicekit.deferred import conditional, together
from servicekit.sql import RowLoad, Statement

HELD = "(SELECT count(*) FROM c) = $9"
T = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("v", String))
INSERT = Statement(insert(T), columns=("id", "v"))
UPSERT = Statement(insert(T).on_conflict_do_nothing(), columns=("id", "v"))
UPDATE = Statement(update(T).where(T.c.id == bindparam("k")).values(v=bindparam("v")))
UPDATE_ALL = Statement(update(T).values(v=bindparam("v")))
DELETE = Statement(delete(T).where(T.c.id == bindparam("k")))


def test_an_insert_selects_its_rows_only_if_the_condition_changed_one() -> None:
    assert conditional(INSERT.sql, HELD) == (
        "INSERT INTO t (id, v) SELECT * FROM (VALUES ($1::INTEGER, $2::VARCHAR)) AS given"
        " WHERE (SELECT count(*) FROM c) = $9"
    )
    assert conditional(UPSERT.sql, HELD).endswith(
        "AS given WHERE (SELECT count(*) FROM c) = $9 ON CONFLICT DO NOTHING"
    )


def test_an_update_or_delete_gets_the_condition_in_its_where() -> None:
    assert conditional(UPDATE.sql, HELD) == (
        "UPDATE t SET v=$1::VARCHAR WHERE (t.id = $2::INTEGER) AND (SELECT count(*) FROM c) = $9"
    )
    assert (
        conditional(UPDATE_ALL.sql, HELD)
        == "UPDATE t SET v=$1::VARCHAR WHERE (SELECT count(*) FROM c) = $9"
    )
    assert conditional(DELETE.sql, HELD) == (
        "DELETE FROM t WHERE (t.id = $1::INTEGER) AND (SELECT count(*) FROM c) = $9"
    )


def test_what_cannot_be_made_conditional_is_refused() -> None:
    with pytest.raises(TypeError, match="more than one WHERE"):
        conditional("UPDATE t SET v = (SELECT v FROM u WHERE u.id = 1) WHERE t.id = 2", HELD)
    with pytest.raises(TypeError, match="not a write"):
        conditional("SELECT 1", HELD)


def test_the_condition_goes_first_and_the_statement_answers_its_rows() -> None:
    sql, args = together([(INSERT, [1, "a"]), (DELETE, [2])], (UPDATE, ["x", 3]), rows=1)
    assert args == ["x", 3, 1, "a", 2, 1]  # the rows the condition must change: last
    assert sql.startswith(
        "WITH c AS (UPDATE t SET v=$1::VARCHAR WHERE t.id = $2::INTEGER RETURNING 1)"
    )
    assert (
        "w1 AS (INSERT INTO t (id, v) SELECT * FROM (VALUES ($3::INTEGER, $4::VARCHAR)) AS given"
        " WHERE (SELECT count(*) FROM c) = $6)"
    ) in sql
    assert (
        "w2 AS (DELETE FROM t WHERE (t.id = $5::INTEGER) AND (SELECT count(*) FROM c) = $6)" in sql
    )
    assert sql.endswith(" SELECT count(*) FROM c")


def test_writes_without_a_condition_are_one_with_and_one_alone_is_itself() -> None:
    assert together([(INSERT, [1, "a"])], None) == (INSERT.sql, [1, "a"])
    sql, args = together([(INSERT, [1, "a"]), (DELETE, [2])], None)
    assert sql == f"WITH w0 AS ({INSERT.sql}) DELETE FROM t WHERE t.id = $3::INTEGER"
    assert args == [1, "a", 2]


def test_a_condition_alone_answers_its_rows_and_takes_no_more_parameters() -> None:
    sql, args = together([], (UPDATE, ["x", 3]), rows=1)
    assert sql == f"WITH c AS ({UPDATE.sql} RETURNING 1) SELECT count(*) FROM c"
    assert args == ["x", 3]


GUARD = RowLoad(select(T).where(T.c.id == bindparam("id")), T).guard
FOUND = "(SELECT count(*) FROM g0) = 1 AND (SELECT count(*) FROM g1) = 1"


def test_a_row_load_reads_its_version_and_its_guard_locks_only_that_version() -> None:
    load = RowLoad(select(T).where(T.c.id == bindparam("id")), T)
    assert load.locked.sql.endswith("WHERE t.id = $1::INTEGER FOR UPDATE")
    assert load.plain.sql.startswith("SELECT t.id, t.v, xmin \nFROM t")
    assert " ".join(GUARD.sql.split()) == (
        "SELECT 1 FROM t WHERE t.id = $1::INTEGER AND xmin = $2 FOR UPDATE"
    )


def test_guards_go_first_and_the_condition_and_writes_hold_only_if_each_found_its_row() -> None:
    sql, args = together(
        [(UPDATE, ["x", 1])], (UPSERT, [2, "b"]), 1, [(GUARD, [1, 7]), (GUARD, [2, 8])]
    )
    assert args == [1, 7, 2, 8, 2, "b", "x", 1, 1]
    assert sql.startswith(f"WITH g0 AS ({GUARD.sql}), g1 AS (")
    assert (
        "c AS (INSERT INTO t (id, v) SELECT * FROM (VALUES ($5::INTEGER, $6::VARCHAR)) AS given"
        f" WHERE {FOUND} ON CONFLICT DO NOTHING RETURNING 1)"
    ) in sql
    assert (
        "w3 AS (UPDATE t SET v=$7::VARCHAR WHERE (t.id = $8::INTEGER) AND "
        "(SELECT count(*) FROM c) = $9)"
    ) in sql
    assert sql.endswith(f" SELECT CASE WHEN {FOUND} THEN (SELECT count(*) FROM c) ELSE -1 END")


def test_without_a_condition_the_writes_hold_if_the_guard_found_its_row() -> None:
    sql, args = together([(UPDATE, ["x", 1])], None, 1, [(GUARD, [1, 7])])
    assert args == [1, 7, "x", 1]
    found = "(SELECT count(*) FROM g0) = 1"
    assert sql == (
        f"WITH g0 AS ({GUARD.sql}), w1 AS (UPDATE t SET v=$3::VARCHAR WHERE (t.id = $4::INTEGER)"
        f" AND {found}) SELECT CASE WHEN {found} THEN 0 ELSE -1 END"
    )
