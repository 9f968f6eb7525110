"""Topic names. One topic per producing context, keyed by request id."""

MODEL_EVENTS = "model.events"
TARGET_EVENTS = "target.events"
CORE_EVENTS = "core.events"

EVENT_TOPICS = (MODEL_EVENTS, TARGET_EVENTS, CORE_EVENTS)
CONSUMING_SERVICES = ("model", "target", "core", "notice", "mypage_cqrs")


def dead_letter_topic(service: str) -> str:
    """Where a service parks the messages it could not process."""
    return f"{service}.dlt"


ALL_TOPICS = EVENT_TOPICS + tuple(dead_letter_topic(s) for s in CONSUMING_SERVICES)
