"""The relay's wake-ups: which NOTIFY calls for a read (pure; no database)."""

from __future__ import annotations

from servicekit.relay_wakeups import Wakeups


def _woken(w: Wakeups) -> bool:
    woken = w._event.is_set()
    w.clear()
    return woken


def test_a_notify_for_a_row_read_already_wakes_nothing() -> None:
    w = Wakeups()
    w.begin_read()
    w.end_read([7, 8])
    w.notified("8")
    assert not _woken(w)
    w.notified("9")  # not read yet
    assert _woken(w)
    w.notified("")  # an older trigger's: no id, always a read
    assert _woken(w)
    w.notified("7")
    assert not _woken(w)


def test_a_notify_during_a_read_is_judged_by_what_the_read_returned() -> None:
    w = Wakeups()
    w.begin_read()
    w.notified("3")  # committed before the read's snapshot: the read returns it
    w.end_read([3])
    assert not _woken(w)
    w.begin_read()
    w.notified("5")  # committed after the read began: not in it
    w.end_read([4])
    assert _woken(w)
    w.begin_read()
    w.notified("6")
    w.end_read(None)  # the read failed: read again
    assert _woken(w)


def test_the_last_two_reads_are_remembered() -> None:
    w = Wakeups()
    for ids in ([1], [2], [3]):
        w.begin_read()
        w.end_read(ids)
    w.notified("2")
    assert not _woken(w)
    w.notified("1")  # three reads ago: read again rather than risk missing it
    assert _woken(w)
