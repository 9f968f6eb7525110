"""When the outbox relay reads: at its own process's commits, at other processes' NOTIFY,
and at least once per poll interval.

A commit in the relay's own process wakes it at once (:meth:`Wakeups.wake`, called by the
unit of work), before the request that committed has answered: the NOTIFY of the same
commit is read only after that answer, a millisecond or more later. That NOTIFY names the
row's id (``servicekit.tables.notify_outbox_row_ids``), and a row the relay has read
already, or finds in the read under way, wakes nothing: no read that finds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


class Wakeups:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._during_read: list[int] | None = None  # ids notified while a read is under way
        self._read: set[int] = set()  # ids of the last read
        self._read_before: set[int] = set()  # and of the one before it
        self._waiting = False

    def wake(self) -> None:
        """This process committed outbox rows: read now, if waiting. A relay busy with
        a batch needs no wake-up: the commit's NOTIFY is judged against what it read."""
        if self._waiting:
            self._event.set()

    def notified(self, payload: str) -> None:
        """A NOTIFY on the outbox channel; its payload is the new row's id."""
        try:
            row_id = int(payload)
        except ValueError:  # no id (the trigger before notify_outbox_row_ids): read
            self._event.set()
            return
        if self._during_read is not None:
            self._during_read.append(row_id)  # judged when the read is back
        elif row_id not in self._read and row_id not in self._read_before:
            self._event.set()

    def begin_read(self) -> None:
        self._during_read = []

    def end_read(self, row_ids: Iterable[int] | None) -> None:
        """The read is back with ``row_ids`` (None: it failed). A row notified during it
        that it did not return (committed after it began) calls for another read."""
        notified, self._during_read = self._during_read or [], None
        if row_ids is None:
            if notified:
                self._event.set()
            return
        self._read_before, self._read = self._read, set(row_ids)
        if any(i not in self._read and i not in self._read_before for i in notified):
            self._event.set()

    def clear(self) -> None:
        self._event.clear()

    async def wait(self, timeout_s: float) -> None:
        """Until woken, or ``timeout_s`` passed (the poll that finds what no wake-up
        announced: a lost NOTIFY, a retry due)."""
        self._waiting = True
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._event.wait()
        finally:
            self._waiting = False
