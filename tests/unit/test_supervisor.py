"""The supervisor's restart rules, with a fake clock and fake processes."""

from __future__ import annotations

import itertools
import signal

from nocode.supervisor import Child, RestartPolicy, Supervisor, describe_exit


class FakeProcess:
    _pids = itertools.count(100)

    def __init__(self) -> None:
        self.pid = next(self._pids)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.returncode = -9


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def supervised(policy: RestartPolicy | None = None) -> tuple[Supervisor, Child, Clock, list[str]]:
    clock, lines, changes = Clock(), [], []
    sup = Supervisor(
        [],
        policy or RestartPolicy(1.0, 8.0, 60.0, jitter=False),
        clock,
        lines.append,
        lambda: changes.append(1),
    )
    child = sup.adopt("core", FakeProcess(), FakeProcess)
    return sup, child, clock, lines


def test_an_exit_is_logged_in_one_line_and_restarted_after_the_delay() -> None:
    sup, child, clock, lines = supervised()
    first = child.process
    clock.now = 5.0
    first.returncode = -signal.SIGKILL
    sup.tick()
    assert lines == [
        f"nocode: core (pid {first.pid}) killed by SIGKILL after 5.0s up; restart attempt 1 in 1.0s"
    ]
    assert child.state()["state"] == "restarting" and child.restarts == 0
    clock.now = 5.9
    sup.tick()
    assert child.process is first  # not yet
    clock.now = 6.0
    sup.tick()
    assert child.process is not first and child.restarts == 1
    assert lines[-1] == f"nocode: core restarted (pid {child.pid}, restart #1)"
    state = child.state()
    assert state.pop("created", "missing") != "missing"  # the real process's start time
    assert state == {
        "pid": child.pid,
        "state": "running",
        "restarts": 1,
        "last_exit": "killed by SIGKILL",
    }


def test_backoff_doubles_up_to_the_cap_and_resets_once_it_stayed_up() -> None:
    sup, child, clock, lines = supervised()
    delays = []
    for _ in range(6):  # crashes right after each start
        child.process.returncode = 1
        sup.tick()
        delays.append(child.restart_at - clock.now)
        clock.now = child.restart_at
        sup.tick()
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert child.restarts == 6 and "exited with code 1" in lines[-2]
    clock.now += 60.0  # stayed up a minute
    child.process.returncode = 3
    sup.tick()
    assert child.restart_at - clock.now == 1.0 and child.attempt == 1


def test_a_failed_start_counts_as_an_exit_and_is_tried_again() -> None:
    sup, child, clock, lines = supervised()
    calls = []

    def flaky() -> FakeProcess:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("port busy")
        return FakeProcess()

    child.start = flaky
    child.process.returncode = 1
    sup.tick()
    clock.now = 1.0
    sup.tick()
    assert "failed to start (port busy)" in lines[-1] and "restart attempt 2 in 2.0s" in lines[-1]
    clock.now = 3.0
    sup.tick()
    assert child.process is not None and child.process.poll() is None
    assert child.restarts == 2


def test_after_start_failing_kills_the_new_process() -> None:
    sup, child, clock, lines = supervised()
    started: list[FakeProcess] = []

    def start() -> FakeProcess:
        started.append(FakeProcess())
        return started[-1]

    def no_topics() -> None:
        raise TimeoutError("broker not answering")

    child.start, child.after_start = start, no_topics
    child.process.returncode = -9
    sup.tick()
    clock.now = 1.0
    sup.tick()
    assert started[0].returncode == -9  # killed: the next attempt starts a fresh one
    assert "failed to start (broker not answering)" in lines[-1]


def test_describe_exit() -> None:
    assert describe_exit(-signal.SIGTERM) == "killed by SIGTERM"
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(2) == "exited with code 2"


def test_restarts_are_jittered_by_default() -> None:
    policy = RestartPolicy(1.0, 8.0, 60.0)
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)):
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays) and len(delays) > 1
