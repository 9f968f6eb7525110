"""Supervision: restart a process of the platform that exits, with backoff.

``nocode up`` runs its services, the embedded broker and the embedded PostgreSQL as
child processes. Like an orchestrator, it restarts one that exits while the others
keep serving: after about 1 s, then 2 s, 4 s... (jittered) up to a cap, and back to the first delay
once a process has stayed up a while. Each restart is logged as one line and counted.

The loop is pure apart from the clock and the processes it is given, so it is
unit-tested with fakes and no sleeping.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from servicekit.resilience import backoff_delay

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def dies_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn``: the child gets ``sig`` when the thread that started it ends (for
    ``nocode up``'s main thread: when ``up`` dies, even by SIGKILL), so a killed ``up``
    leaves no process of its platform behind. Linux only; ``None`` elsewhere."""
    libc = _LIBC
    if libc is None:
        return None

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig))

    return preexec


class Process(Protocol):
    """What a supervised process exposes: a ``subprocess.Popen`` is one."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


@dataclass(frozen=True)
class RestartPolicy:
    initial_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0  # up this long: the next exit starts from initial_s again
    jitter: bool = True  # processes that died together do not all restart at once

    def delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.initial_s, self.max_s, jitter=self.jitter)


@dataclass
class Child:
    """One supervised process: how to start it, and what to do once it is started
    (the broker's topics); either may raise, which counts as a failed start."""

    name: str
    start: Callable[[], Process]
    after_start: Callable[[], None] | None = None
    process: Process | None = None
    restarts: int = 0  # how many times it was started again after an exit
    attempt: int = 0  # consecutive exits without staying up reset_after_s
    started_at: float = 0.0
    restart_at: float | None = None  # when the next start is due, while it is down
    last_exit: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def state(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "created": _created(self.pid),  # with the pid, tells this process from a reuse
            "state": "restarting" if self.restart_at is not None else "running",
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }


def _created(pid: int | None) -> float | None:
    try:
        return psutil.Process(pid).create_time() if pid else None
    except psutil.Error:
        return None


def describe_exit(returncode: int) -> str:
    """``killed by SIGKILL`` for a signal (a negative return code), else the code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Supervisor:
    children: list[Child]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = print
    on_change: Callable[[], None] = lambda: None  # a child exited or was started again

    def adopt(
        self,
        name: str,
        process: Process,
        start: Callable[[], Process],
        after_start: Callable[[], None] | None = None,
    ) -> Child:
        """Supervise a process already started (at platform start-up)."""
        child = Child(name, start, after_start, process, started_at=self.clock())
        self.children.append(child)
        return child

    def tick(self) -> None:
        """One pass: notice exits, schedule their restarts, start those that are due."""
        changed = False
        now = self.clock()
        for child in self.children:
            if child.restart_at is None and child.process is not None:
                code = child.process.poll()
                if code is not None:
                    self._exited(child, describe_exit(code), now)
                    changed = True
            if child.restart_at is not None and now >= child.restart_at:
                self._restart(child)
                changed = True
        if changed:
            self.on_change()

    def run(self, interval_s: float = 0.2, sleep: Callable[[float], None] = time.sleep) -> None:
        """Supervise until interrupted (a signal handler raising is how ``up`` stops)."""
        while True:
            self.tick()
            sleep(interval_s)

    def _exited(self, child: Child, how: str, now: float) -> None:
        up_for = now - child.started_at
        child.attempt = 1 if up_for >= self.policy.reset_after_s else child.attempt + 1
        delay = self.policy.delay(child.attempt)
        child.restart_at = now + delay
        child.last_exit = how
        self.log(
            f"nocode: {child.name} (pid {child.pid or '-'}) {how} after {up_for:.1f}s up; "
            f"restart attempt {child.attempt} in {delay:.1f}s"
        )

    def _restart(self, child: Child) -> None:
        child.restart_at = None
        child.restarts += 1
        child.started_at = self.clock()
        try:
            child.process = child.start()
            if child.after_start is not None:
                child.after_start()
        except Exception as exc:
            self._failed_start(child, exc)
            return
        self.log(f"nocode: {child.name} restarted (pid {child.pid}, restart #{child.restarts})")

    def _failed_start(self, child: Child, exc: Exception) -> None:
        process, child.process = child.process, None
        if process is not None and process.poll() is None:
            kill = getattr(process, "kill", None)
            if kill is not None:
                kill()
        child.started_at = self.clock()  # a failed start never counts as having stayed up
        self._exited(child, f"failed to start ({exc})", child.started_at)

    def states(self) -> dict[str, dict[str, object]]:
        return {child.name: child.state() for child in self.children}
