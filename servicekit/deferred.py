"""Writes waiting for the commit (:meth:`servicekit.sql.Sql.defer`), sent as one statement.

Several writes go as one data-modifying ``WITH``: ``WITH w0 AS (first), … last``, each
write's ``$n`` parameters numbered after the ones before it. The text is built once per
sequence of statements, so asyncpg prepares it once per connection.

A *condition* (:meth:`servicekit.sql.Sql.defer_condition`) is a write the others depend
on: a job's update that holds only while the row is as its worker last wrote it, or a
consumer's inbox rows, one per event, none of them there before. It goes first, as
``c``, and holds when it changed as many rows as expected (the last parameter). Every
other write is made conditional on it (an INSERT's rows are selected ``WHERE`` it held,
an UPDATE's or DELETE's condition gets ``AND`` it held), and the statement answers how
many rows the condition changed. So a conditional write and what depends on it are one
statement too: none of it is stored when the condition fails.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servicekit.sql import Statement

Waiting = list[tuple["Statement", list[Any]]]

_PARAMETER = re.compile(r"\$(\d+)")
_INSERT_INTO = re.compile(r"^INSERT INTO [\w.\"]+ \([^()]*\) ")
_TOGETHER: dict[tuple[tuple[Statement, ...], bool], str] = {}
_TOGETHER_KEPT = 256


def together(
    waiting: Waiting, condition: tuple[Statement, list[Any]] | None, rows: int = 1
) -> tuple[str, list]:
    """One statement for ``waiting``'s writes (after ``condition``'s, if any, which holds
    when it changes ``rows`` rows) and its parameters. With a condition, the statement
    returns the rows the condition changed."""
    ordered = ([condition] if condition else []) + waiting
    args = [arg for _, statement_args in ordered for arg in statement_args]
    if len(ordered) == 1 and condition is None:
        return waiting[0][0].sql, args
    if condition is not None and waiting:
        args.append(rows)  # what the writes after the condition check (held, below)
    key = (tuple(statement for statement, _ in ordered), condition is not None)
    sql = _TOGETHER.get(key)
    if sql is None:
        parts, before = [], 0
        held = f"(SELECT count(*) FROM c) = ${len(args)}"
        for n, (statement, statement_args) in enumerate(ordered):
            text = _renumbered(statement.sql, before)
            if condition is not None:
                text = f"{text} RETURNING 1" if n == 0 else conditional(text, held)
            parts.append(text)
            before += len(statement_args)
        if condition is not None:
            ctes = ", ".join(
                f"{'c' if n == 0 else f'w{n}'} AS ({part})" for n, part in enumerate(parts)
            )
            sql = f"WITH {ctes} SELECT count(*) FROM c"
        else:
            *first, last = parts
            ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(first))
            sql = f"WITH {ctes} {last}"
        if len(_TOGETHER) >= _TOGETHER_KEPT:  # statements made per table (a replay's)
            _TOGETHER.clear()
        _TOGETHER[key] = sql
    return sql, args


def conditional(sql: str, held: str) -> str:
    """``sql`` (an INSERT, UPDATE or DELETE without RETURNING, as SQLAlchemy compiles it)
    writing only where ``held`` (a condition on ``c``) is true."""
    if sql.startswith("INSERT INTO "):
        head = _INSERT_INTO.match(sql)
        if head is None:
            raise TypeError(f"no column list to make conditional: {sql}")
        source, _, on_conflict = sql[head.end() :].partition(" ON CONFLICT ")
        tail = f" ON CONFLICT {on_conflict}" if on_conflict else ""
        return f"{head.group(0)}SELECT * FROM ({source}) AS given WHERE {held}{tail}"
    if sql.startswith(("UPDATE ", "DELETE FROM ")):
        wheres = sql.count(" WHERE ")
        if wheres > 1:
            raise TypeError(f"more than one WHERE, cannot make it conditional: {sql}")
        if wheres == 0:
            return f"{sql} WHERE {held}"
        head, _, where = sql.partition(" WHERE ")
        return f"{head} WHERE ({where}) AND {held}"
    raise TypeError(f"not a write to make conditional: {sql}")


def _renumbered(sql: str, shift: int) -> str:
    return _PARAMETER.sub(lambda m: f"${int(m[1]) + shift}", sql) if shift else sql
