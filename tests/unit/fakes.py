"""What every in-memory unit of work shares: the real one's ``after_commit``."""

from __future__ import annotations

from collections.abc import Callable


class AfterCommit:
    """Callbacks run after a commit that succeeds, dropped when the block is left
    without one (as ``servicekit.db.UnitOfWork`` does); ``fail_commit`` makes the
    next commits raise."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], object]] = []
        self.fail_commit = False

    def after_commit(self, callback: Callable[[], object]) -> None:
        self.callbacks.append(callback)

    def committing(self) -> None:
        """Call at the start of the fake's commit."""
        if self.fail_commit:
            raise ConnectionError("commit failed")

    def committed(self) -> None:
        """Call at the end of the fake's commit."""
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()
