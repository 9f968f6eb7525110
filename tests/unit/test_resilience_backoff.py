"""The kernel's one retry schedule: doubling, capped, jittered by default, reset on success.

The randomness is injected (``rand``) or bounded, so nothing here sleeps.
"""

from __future__ import annotations

import itertools

from servicekit.resilience import Backoff, backoff_delay


def test_without_jitter_the_delay_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(n, 0.2, 5.0, jitter=False) for n in range(1, 9)]
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_jitter_is_the_default_and_stays_within_half_to_the_full_delay() -> None:
    assert backoff_delay(3, 1.0, 10.0, rand=lambda: 0.0) == 2.0  # the lowest: half of 4
    assert backoff_delay(3, 1.0, 10.0, rand=lambda: 1.0) == 4.0  # the highest: all of it
    assert backoff_delay(3, 1.0, 10.0, rand=lambda: 0.5) == 3.0
    for attempt in range(1, 12):
        full = backoff_delay(attempt, 0.5, 8.0, jitter=False)
        drawn = {backoff_delay(attempt, 0.5, 8.0) for _ in range(200)}
        assert all(full / 2 <= d <= full for d in drawn)
        assert len(drawn) > 100  # really random: clients do not retry in lockstep


def test_the_cap_holds_with_jitter_and_for_any_attempt_count() -> None:
    assert max(backoff_delay(n, 1.0, 30.0) for n in range(1, 200)) <= 30.0
    # A dependency down for days: a huge attempt count neither overflows nor exceeds the cap.
    assert backoff_delay(10**9, 1.0, 60.0, jitter=False) == 60.0
    assert backoff_delay(0, 1.0, 60.0, jitter=False) == 1.0  # no attempt yet: the first delay


def test_retries_grow_with_each_failure_and_reset_after_a_success() -> None:
    retries = Backoff(1.0, 8.0, jitter=False).retries()
    assert [retries.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert retries.attempt == 5
    retries.reset()
    assert retries.attempt == 0 and retries.next_delay() == 1.0


def test_retries_are_jittered_by_default_within_each_step() -> None:
    backoff = Backoff(0.2, 5.0)
    assert backoff.jitter
    retries = backoff.retries()
    for full in itertools.islice(
        itertools.chain([0.2, 0.4, 0.8, 1.6, 3.2], itertools.repeat(5.0)), 10
    ):
        assert full / 2 <= retries.next_delay() <= full
    # Two loops with the same schedule (two replicas, two consumers) draw different delays.
    a, b = backoff.retries(), backoff.retries()
    assert [a.next_delay() for _ in range(8)] != [b.next_delay() for _ in range(8)]


def test_a_schedule_kept_in_a_row_uses_the_same_delays_by_attempt_number() -> None:
    backoff = Backoff(1.0, 30.0, jitter=False)
    assert [backoff.delay(n) for n in (1, 2, 3, 6, 7)] == [1.0, 2.0, 4.0, 30.0, 30.0]
