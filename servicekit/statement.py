"""A statement declared in SQLAlchemy Core, compiled once for asyncpg.

Running a statement through SQLAlchemy's async layer costs about 140 µs of client CPU
beyond asyncpg's own (the cache key, two greenlet hops, the result's wrapping:
``bench/db_layer.py``). A :class:`Statement` is compiled once, at import, to the SQL
asyncpg prepares (cached per connection) and the order of its parameters;
``servicekit.sql.Sql`` runs it. What a statement may hold is checked when it is compiled:
no ``IN`` list expanded per call (use ``= ANY(:ids)``) and no Python-side column default
(give the column a value or a server default), since those need SQLAlchemy's execution to
fill them in. A :class:`RowLoad` is the statements of a row read to be changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql import ClauseElement

_DIALECT = asyncpg_dialect()
_NO_VALUE = object()

Params = Mapping[str, Any]
_WORD = re.compile(r"[a-z_]+")
_PARAMETER = re.compile(r"\$(\d+)")


def constant(value: str) -> ColumnElement[Any]:
    """``value`` (a state's name) written into the statement, not passed as a parameter:
    a prepared statement's generic plan can then use a partial index whose predicate
    names it (``WHERE status = 'pending'``)."""
    if not _WORD.fullmatch(value):
        raise ValueError(f"not a plain word: {value!r}")
    return literal_column(f"'{value}'")


class RowLoad:
    """A row read to be changed, by ``statement`` (a SELECT of one row of ``table`` by its
    ``key`` column): locked as it is read (``locked``, FOR UPDATE), or read with its
    version (``plain``, with ``xmin``) and locked by the commit's statement only if it is
    still that version (``guard``; :meth:`servicekit.sql.Sql.fetchrow_for_update`)."""

    __slots__ = ("guard", "key", "locked", "plain")

    def __init__(self, statement: Select[Any], table: Table, key: str = "id") -> None:
        self.key = key
        self.locked = Statement(statement.with_for_update())
        self.plain = Statement(statement.add_columns(literal_column("xmin")))
        self.guard = Statement(
            select(literal_column("1"))
            .select_from(table)
            .where(table.c[key] == bindparam("key"), literal_column("xmin") == bindparam("xmin"))
            .with_for_update()
        )


class Statement:
    """``statement`` compiled for asyncpg. For an INSERT, ``columns`` names the columns
    given a value (the others take their server defaults)."""

    __slots__ = ("_binds", "sql", "writes")

    def __init__(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> None:
        compiled = statement.compile(
            dialect=_DIALECT,
            column_keys=list(columns) if columns is not None else None,
            # As for executemany: no RETURNING of a generated key nobody reads (an INSERT
            # returns only what its statement asks for).
            for_executemany=True,
        )
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise ValueError(f"a Python-side column default needs SQLAlchemy: {compiled.string}")
        processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors
        binds: list[tuple[str, Callable[[Any], Any] | None, Any]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            if bind.expanding:
                raise ValueError(f"an expanding IN list in {compiled.string}: use = ANY(:{name})")
            fixed = bind.value if bind.value is not None or not bind.required else _NO_VALUE
            binds.append((name, processors.get(name), fixed))
        self.sql: str = compiled.string
        self._binds = tuple(binds)
        # The table a write without RETURNING changes: such a write may wait (Sql.defer).
        self.writes: str | None = None
        if isinstance(statement, Insert | Update | Delete) and not compiled.returning:
            if "$" in _PARAMETER.sub("", self.sql):
                raise ValueError(f"a '$' not a parameter's, in {self.sql}")
            self.writes = statement.table.name  # type: ignore[union-attr]

    def args(self, params: Params | None) -> list[Any]:
        """The positional arguments for ``params`` (by bind name); a bind the statement
        fixed (a literal, a limit) takes its own value unless ``params`` names it."""
        given = params or {}
        out = []
        for name, process, fixed in self._binds:
            value = given.get(name, fixed)
            if value is _NO_VALUE:
                raise KeyError(f"no value for :{name} in {self.sql}")
            out.append(process(value) if process is not None and value is not None else value)
        return out
