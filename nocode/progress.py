"""``nocode up``'s progress: one line per step as it finishes, with how long it took.

    nocode: PostgreSQL ready (1.2 s)
    nocode: broker ready (0.3 s)

A step that fails becomes a :class:`~nocode.errors.CliError` naming the step, with the
step's hint (where its log is, what to check).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nocode.errors import DEBUG_HINT, CliError, explain


class Progress:
    def __init__(
        self, out: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out
        self.clock = clock
        self.started = clock()

    def say(self, line: str) -> None:
        if self.out is not None:
            self.out(f"nocode: {line}")

    def done(self, what: str, since: float) -> None:
        self.say(f"{what} ({self.clock() - since:.1f} s)")

    @contextmanager
    def step(self, what: str, done: str = "ready", hint: str = DEBUG_HINT) -> Iterator[None]:
        """Time the block; then ``<what> <done> (x.x s)``. A failure inside names ``what``."""
        started = self.clock()
        try:
            yield
        except CliError:
            raise
        except Exception as exc:
            known = explain(exc)
            raise CliError(
                f"{what} failed: {known.message}", hint if known.hint == DEBUG_HINT else known.hint
            ) from exc
        self.done(f"{what} {done}", started)

    def elapsed(self) -> float:
        return self.clock() - self.started
