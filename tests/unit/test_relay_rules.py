"""Pure rules of the relay and what status makes of a re-publish that lacked events."""

from __future__ import annotations

from types import SimpleNamespace

from nocode.status import ServiceStatus, Snapshot, parse_metrics, verdict
from servicekit.kafka import BrokerView
from servicekit.relay_sends import split_by_topic


def row(id: int, topic: str, key: str) -> SimpleNamespace:
    return SimpleNamespace(id=id, topic=topic, key=key)


def test_rows_for_a_missing_topic_wait_and_their_key_waits_behind_them() -> None:
    rows = [
        row(1, "a.events", "1"),
        row(2, "b.events", "2"),  # b.events does not exist
        row(3, "a.events", "2"),  # same key as the held row: must not overtake it
        row(4, "a.events", "3"),
    ]
    sendable, held = split_by_topic(rows, BrokerView("c1", frozenset({"a.events"})))
    assert [r.id for r in sendable] == [1, 4]
    assert [r.id for r in held] == [2, 3]


SCRAPE = """
# TYPE outbox_republish_missing_events gauge
outbox_republish_missing_events{service="model"} 7.0
outbox_republish_missing_events{service="target"} 0.0
# TYPE outbox_backlog_events gauge
outbox_backlog_events{service="model"} 0.0
"""


def test_status_says_when_a_re_publish_lacked_pruned_events() -> None:
    model = parse_metrics("model", SCRAPE)
    target = parse_metrics("target", SCRAPE)
    snapshot = Snapshot(
        (
            ServiceStatus("model", "-", "ok", metrics=model),
            ServiceStatus("target", "-", "ok", metrics=target),
        )
    )
    assert (model.republish_missing, target.republish_missing) == (7, 0)
    assert verdict(snapshot).reasons == (
        "model outbox re-publish incomplete: 7 events pruned by OUTBOX_RETENTION_HOURS "
        "never reached the new broker",
    )
