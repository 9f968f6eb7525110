"""``nocode dlq``'s pure parts: which services are asked, what the admin reads."""

from __future__ import annotations

import pytest

from nocode.dlq import DlqError, Filters, Row, render, targets


def test_dead_letters_everywhere_failed_things_where_a_service_has_them() -> None:
    assert targets([], []) == [
        ("model", "dead-letters"),
        ("target", "dead-letters"),
        ("core", "dead-letters"),
        ("core", "failed"),
        ("notice", "dead-letters"),
        ("notice", "failed"),
        ("mypage_cqrs", "dead-letters"),
    ]
    assert targets(["core"], ["failed"]) == [("core", "failed")]
    assert targets(["model"], ["failed"]) == []
    with pytest.raises(DlqError, match="unknown service gateway"):
        targets(["gateway"], [])


def test_filters_go_where_they_mean_something() -> None:
    f = Filters(ids=(3, 4), event_type="Approved", kind="lms")
    assert f.params("dead-letters") == [("id", "3"), ("id", "4"), ("eventType", "Approved")]
    assert f.params("failed") == [("id", "3"), ("id", "4"), ("kind", "lms")]


def test_a_dry_run_says_nothing_changed_and_how_to_act() -> None:
    rows = [Row("core", "failed", 7, "lms", "failed", "target request 2: x", "would_redrive")]
    screen = render(rows, mode="dry-run")
    assert "core         failed           7  lms" in screen and "→ would_redrive" in screen
    assert "dry run: nothing changed" in screen and "--yes" in screen
    assert render([], mode="list").startswith("nothing stuck")
    applied = [Row("model", "dead-letter", 1, "t", "redriven", "e", "applied")]
    assert render(applied, mode="applied").endswith("re-driven: 1 of 1")
