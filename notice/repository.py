"""Storing and claiming notifications; the targets notice knows; the unit of work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Alias, ColumnElement, Select, bindparam, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from notice.domain import LIFECYCLE, Action, Status
from notice.messages import Notice, TargetInfo
from notice.tables import notice_targets, notifications
from servicekit.db import UnitOfWork
from servicekit.sql import Sql, Statement, constant
from servicekit.tracing import current_traceparent


@dataclass(frozen=True)
class Notification:
    id: int
    event_id: str
    event_type: str
    user_id: str | None
    request_kind: str
    request_id: int
    text: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None
    traceparent: str | None
    redrives: int = 0
    has_next: bool = False  # claimed with a later unsent notification of its request


UNSENT = (Status.PENDING.value, Status.FAILED.value)


def _claim_next() -> Select[Any]:
    n, earlier, later = notifications, notifications.alias("earlier"), notifications.alias("later")

    def same_request_unsent(other: Alias) -> list[ColumnElement[bool]]:
        return [
            other.c.request_kind == n.c.request_kind,
            other.c.request_id == n.c.request_id,
            other.c.status.in_([constant(status) for status in UNSENT]),
        ]

    has_next = select(literal(1)).where(*same_request_unsent(later), later.c.id > n.c.id).exists()
    return (
        select(n, has_next.label("has_next"))
        .where(
            n.c.status == constant(Status.PENDING.value),  # ix_notifications_pending_id
            n.c.next_attempt_at <= func.now(),
            # OFFSET 0 keeps this a subplan run per candidate with its index condition:
            # as an anti-join, a planner on stale statistics (a table that just grew)
            # scanned every unsent row for each candidate.
            ~select(literal(1))
            .where(*same_request_unsent(earlier), earlier.c.id < n.c.id)
            .offset(0)
            .exists(),
        )
        .order_by(n.c.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=n)
    )


# The statements of every event and every message, compiled once.
_CLAIM_NEXT = Statement(_claim_next())
_ADD_COLUMNS = ("event_id", "event_type", "user_id", "request_kind", "request_id", "text")
_ADD = Statement(
    insert(notifications).on_conflict_do_nothing(index_elements=[notifications.c.event_id]),
    columns=(*_ADD_COLUMNS, "status", "attempts", "traceparent"),
)
_MARK_SENT = Statement(
    update(notifications)
    .where(notifications.c.id == bindparam("notification_id"))
    .values(status=bindparam("status_now"), attempts=bindparam("attempts_now"), sent_at=func.now())
)
_TARGET_COLUMNS = ("user_id", "type", "model_request_id")
_new_target = insert(notice_targets)
_REMEMBER = Statement(
    _new_target.on_conflict_do_update(
        index_elements=[notice_targets.c.id],
        set_={c: _new_target.excluded[c] for c in _TARGET_COLUMNS},
    ),
    columns=("id", *_TARGET_COLUMNS),
)
_TARGET = Statement(select(notice_targets).where(notice_targets.c.id == bindparam("id")))


class NotificationRepository:
    def __init__(
        self, session: AsyncSession, sql: Sql, on_added: Callable[[], object] | None = None
    ) -> None:
        self.session = session
        self.sql = sql
        self.on_added = on_added

    async def add(self, notice: Notice, event_id: str, event_type: str) -> None:
        """Store a pending notification with the commit; none if one for this event is
        there already (a redelivery: the inbox keeps the consumer from it)."""
        await self.sql.defer(
            _ADD,
            {
                "event_id": event_id,
                "event_type": event_type,
                "user_id": notice.user_id,
                "request_kind": notice.request_kind,
                "request_id": notice.request_id,
                "text": notice.text,
                "status": Status.PENDING.value,
                "attempts": 0,
                "traceparent": current_traceparent(),
            },
        )
        if self.on_added is not None:
            self.on_added()

    async def get(self, id: int) -> Notification | None:
        row = (
            (await self.session.execute(select(notifications).where(notifications.c.id == id)))
            .mappings()
            .first()
        )
        return Notification(**row) if row is not None else None

    async def list(
        self,
        user_id: str | None,
        limit: int,
        offset: int,
        *,
        request: tuple[str, int] | None = None,
    ) -> list[Notification]:
        """Oldest first; a user's (``user_id``), one request's (``(kind, id)``), or all."""
        query = select(notifications).order_by(notifications.c.id).limit(limit).offset(offset)
        if user_id is not None:
            query = query.where(notifications.c.user_id == user_id)
        if request is not None:
            kind, request_id = request
            query = query.where(
                notifications.c.request_kind == kind, notifications.c.request_id == request_id
            )
        rows = (await self.session.execute(query)).mappings().all()
        return [Notification(**row) for row in rows]

    async def claim_next(self) -> Notification | None:
        """Lock the oldest due notification that is the first unsent one of its request.

        Later notifications of a request wait while an earlier one is pending (being
        sent or backing off) or failed (until an admin re-drives it), so the chat hears
        each request's changes in order. Rows locked by another sender are skipped.
        The claimed one says whether a later one of its request waits behind it.
        """
        row = await self.sql.fetchrow(_CLAIM_NEXT)
        return Notification(**row) if row is not None else None

    async def mark_sent(self, n: Notification, attempts: int) -> None:
        status = LIFECYCLE.next(n.id, Status(n.status), Action.SEND)
        await self.sql.execute(
            _MARK_SENT,
            {"notification_id": n.id, "status_now": status.value, "attempts_now": attempts},
        )

    async def retry_later(self, n: Notification, attempts: int, error: str, delay_s: float) -> None:
        await self._move(
            n,
            Action.RETRY,
            attempts=attempts,
            last_error=error,
            next_attempt_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, delay_s),
        )

    async def mark_failed(self, n: Notification, attempts: int, error: str) -> None:
        await self._move(n, Action.GIVE_UP, attempts=attempts, last_error=error)

    async def resume_all(self) -> int:
        """The chat answers again: every pending notification is due now (order kept)."""
        done = await self.session.execute(
            update(notifications)
            .where(
                notifications.c.status == Status.PENDING.value,
                notifications.c.next_attempt_at > func.now(),
            )
            .values(next_attempt_at=func.now())
        )
        return int(done.rowcount or 0)  # type: ignore[attr-defined]

    async def failed(
        self, ids: list[int] | None = None, request_kind: str | None = None, limit: int = 100
    ) -> list[Notification]:
        query = (
            select(notifications)
            .where(notifications.c.status == Status.FAILED.value)
            .order_by(notifications.c.id)
            .limit(limit)
        )
        if ids:
            query = query.where(notifications.c.id.in_(ids))
        if request_kind is not None:
            query = query.where(notifications.c.request_kind == request_kind)
        rows = (await self.session.execute(query)).mappings().all()
        return [Notification(**row) for row in rows]

    async def redrive(self, id: int) -> Notification | None:
        """Try a failed notification again, with a fresh round of attempts; raises
        ``IllegalTransition`` unless it is failed (a second re-drive while pending)."""
        row = (
            (
                await self.session.execute(
                    select(notifications).where(notifications.c.id == id).with_for_update()
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        n = Notification(**row)
        await self._move(
            n, Action.REDRIVE, attempts=0, next_attempt_at=func.now(), redrives=n.redrives + 1
        )
        return await self.get(id)

    async def prune_sent(self, older_than_hours: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` notifications sent more than ``older_than_hours`` ago."""
        n = notifications
        oldest = (
            select(n.c.id)
            .where(
                n.c.status == Status.SENT.value,
                n.c.sent_at
                < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_hours * 3600),
            )
            .order_by(n.c.sent_at)
            .limit(limit)
        )
        deleted = await self.session.execute(n.delete().where(n.c.id.in_(oldest)))
        return deleted.rowcount or 0

    async def _move(self, n: Notification, action: Action, **values: object) -> None:
        status = LIFECYCLE.next(n.id, Status(n.status), action)
        await self._set(n.id, status=status.value, **values)

    async def _set(self, id: int, **values: object) -> None:
        await self.session.execute(
            update(notifications).where(notifications.c.id == id).values(**values)
        )


class TargetDirectory:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    async def remember(self, info: TargetInfo) -> None:
        await self.sql.defer(
            _REMEMBER,
            {
                "id": info.id,
                "user_id": info.user_id,
                "type": info.type,
                "model_request_id": info.model_request_id,
            },
        )

    async def get(self, id: int) -> TargetInfo | None:
        row = await self.sql.fetchrow(_TARGET, {"id": id})
        return TargetInfo(**row) if row is not None else None


class NoticeUnitOfWork(UnitOfWork):
    notifications: NotificationRepository
    targets: TargetDirectory

    on_queued: Callable[[], object] | None = None
    """Called once a transaction that queued a notification commits (wakes the sender)."""

    def on_begin(self) -> None:
        self.notifications = NotificationRepository(self.session, self.sql, self._queued)
        self.targets = TargetDirectory(self.sql)

    def _queued(self) -> None:
        if self.on_queued is not None:
            self.after_commit(self.on_queued)
