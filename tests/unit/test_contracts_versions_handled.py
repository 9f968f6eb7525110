"""Every consumer handles every registered version of the events it consumes, so a
raised version (contracts.publish) cannot leave the old version's events unhandled."""

from __future__ import annotations

from typing import ClassVar

import pytest

from contracts import model
from contracts.base import Event
from contracts.schemas import unhandled_versions
from core.handlers import JobPolicy, event_handlers
from model.handlers import CORE_HANDLERS as MODEL_HANDLERS
from mypage_cqrs.handlers import HANDLERS as MYPAGE_HANDLERS
from notice.handlers import HANDLERS as NOTICE_HANDLERS
from target.handlers import HANDLERS as TARGET_HANDLERS

CONSUMERS = {
    "model": MODEL_HANDLERS,
    "target": TARGET_HANDLERS,
    "core": event_handlers(JobPolicy(1, 1, 1, 1)),
    "notice": NOTICE_HANDLERS,
    "mypage_cqrs": MYPAGE_HANDLERS,
}


@pytest.mark.parametrize("service", CONSUMERS)
def test_each_consumer_handles_every_version_of_what_it_consumes(service: str) -> None:
    assert CONSUMERS[service], service
    assert unhandled_versions(CONSUMERS[service]) == []


def test_a_consumer_of_only_the_new_version_is_caught() -> None:
    registry = dict(Event.registry)  # classes made here stay out of the real registry
    saved = dict(Event.registry)
    try:

        class RequestedV2(model.ModelRequestEvent):
            version: ClassVar[int] = 2
            event_name: ClassVar[str | None] = "Requested"
            priority: int

        registry[RequestedV2.ce_type()] = RequestedV2
    finally:
        Event.registry.clear()
        Event.registry.update(saved)
    assert RequestedV2.ce_type() == "nocode.model.Requested.v2"
    assert unhandled_versions({RequestedV2}, registry) == ["nocode.model.Requested"]
    assert unhandled_versions({model.Requested}, registry) == ["nocode.model.Requested.v2"]
    assert unhandled_versions({model.Requested, RequestedV2}, registry) == []
