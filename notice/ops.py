"""notice's failed things for the admin's re-drive API: chat messages the chat rejected."""

from __future__ import annotations

from collections.abc import Callable

from notice.repository import NoticeUnitOfWork, Notification
from servicekit.http import NotFound
from servicekit.ops import Stuck


def stuck(n: Notification) -> Stuck:
    return Stuck(
        id=n.id,
        kind=f"{n.request_kind} message",
        subject=f"{n.request_kind} request {n.request_id}: {n.text}",
        state=n.status,
        error=n.last_error,
        attempts=n.attempts,
        redrives=n.redrives,
        since=n.created_at,
    )


class FailedMessages:
    """Failed notifications; ``kind`` filters by request kind (model, target)."""

    kinds = ("model", "target")

    def __init__(self, uow_factory: Callable[[], NoticeUnitOfWork]) -> None:
        self.uow_factory = uow_factory

    async def failed(self, kind: str | None, ids: list[int] | None, limit: int) -> list[Stuck]:
        async with self.uow_factory() as uow:
            found = await uow.notifications.failed(ids, kind, limit)
        return [stuck(n) for n in found]

    async def redrive(self, id: int) -> Stuck:
        async with self.uow_factory() as uow:
            n = await uow.notifications.redrive(id)
            if n is None:
                raise NotFound("notice", id)
            await uow.commit()
        return stuck(n)
