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

A *guard* (:meth:`servicekit.sql.Sql.fetchrow_for_update`, optimistic) is a row read
without a lock to be changed: ``SELECT 1 … WHERE <key> AND xmin = <as read> FOR UPDATE``,
which locks the row if it is still the version read (a row changed since is re-checked
after the other writer's commit, and no longer matches). Guards go first, as ``g0``, ``g1``
…; the condition (or, without one, every write) holds only if each guard found its row,
and the statement answers -1 if one did not. A row read and changed is then two round
trips (the read, this statement), not four (BEGIN, the read locked, the writes, COMMIT).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servicekit.sql import Statement

Write = tuple["Statement", list[Any]]  # a statement and its parameters
Waiting = list[Write]

_PARAMETER = re.compile(r"\$(\d+)")
_INSERT_INTO = re.compile(r"^INSERT INTO [\w.\"]+ \([^()]*\) ")
_TOGETHER: dict[tuple[tuple[Statement, ...], bool], str] = {}
_TOGETHER_KEPT = 256


def together(
    waiting: Waiting,
    condition: tuple[Statement, list[Any]] | None,
    rows: int = 1,
    guards: Sequence[Write] = (),
) -> tuple[str, list]:
    """One statement for ``waiting``'s writes (after ``guards``' and ``condition``'s, if
    any; the condition holds when it changes ``rows`` rows) and its parameters. With a
    condition or guards, the statement returns the rows the condition changed (0 without
    one), or -1 if a guard's row changed since it was read."""
    ordered = [*guards, *([condition] if condition else []), *waiting]
    args = [arg for _, statement_args in ordered for arg in statement_args]
    if len(ordered) == 1 and condition is None:
        return waiting[0][0].sql, args
    if condition is not None and waiting:
        args.append(rows)  # what the writes after the condition check (held, below)
    key = (tuple(statement for statement, _ in ordered), condition is not None, len(guards))
    sql = _TOGETHER.get(key)
    if sql is None:
        sql = _built(ordered, len(guards), condition is not None, len(args))
        if len(_TOGETHER) >= _TOGETHER_KEPT:  # statements made per table (a replay's)
            _TOGETHER.clear()
        _TOGETHER[key] = sql
    return sql, args


def _built(ordered: Sequence[Write], guards: int, condition: bool, rows_parameter: int) -> str:
    names = [f"g{n}" for n in range(guards)] + (["c"] if condition else [])
    names += [f"w{n}" for n in range(len(names), len(ordered))]
    found = " AND ".join(f"(SELECT count(*) FROM g{n}) = 1" for n in range(guards))
    held = f"(SELECT count(*) FROM c) = ${rows_parameter}" if condition else found
    parts, before = [], 0
    for name, (statement, statement_args) in zip(names, ordered, strict=True):
        text = _renumbered(statement.sql, before)
        if name == "c":
            text = f"{conditional(text, found) if guards else text} RETURNING 1"
        elif name.startswith("w") and held:
            text = conditional(text, held)
        parts.append(text)
        before += len(statement_args)
    if not held:
        *first, last = parts
        ctes = ", ".join(f"{name} AS ({part})" for name, part in zip(names, first, strict=False))
        return f"WITH {ctes} {last}"
    ctes = ", ".join(f"{name} AS ({part})" for name, part in zip(names, parts, strict=True))
    if not guards:
        return f"WITH {ctes} SELECT count(*) FROM c"
    changed = "(SELECT count(*) FROM c)" if condition else "0"
    return f"WITH {ctes} SELECT CASE WHEN {found} THEN {changed} ELSE -1 END"


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
