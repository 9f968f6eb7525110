"""New ids taken from a sequence in blocks: one round trip per block, not per row."""

from __future__ import annotations

import weakref
from collections import deque

from sqlalchemy import Sequence as DbSequence
from sqlalchemy import bindparam, func, select

from servicekit.sql import Sql, Statement


class IdBlocks:
    """New ids from ``sequence``, taken ``size`` at a time: one round trip per ``size`` new
    rows instead of one per row (a request's INSERT is then its only statement before the
    outbox row). Ids stay unique; like a sequence's own cache, a process that stops leaves
    the rest of its block unused (a gap), and two processes' ids interleave."""

    def __init__(self, sequence: DbSequence, size: int = 16) -> None:
        self.size = size
        self._take = Statement(
            select(sequence.next_value()).select_from(func.generate_series(1, bindparam("n")))
        )
        self._free: weakref.WeakKeyDictionary[object, deque[int]] = weakref.WeakKeyDictionary()

    async def next(self, sql: Sql) -> int:
        free = self._free.setdefault(sql.database, deque())
        if not free:
            taken = [row[0] for row in await sql.fetch(self._take, {"n": self.size})]
            free.extend(sorted(taken))
        return free.popleft()
