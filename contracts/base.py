"""The event base class and the registry that maps a CloudEvents type to its contract."""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def now_ms() -> int:
    return int(time.time() * 1000)


def new_event_id() -> str:
    return str(uuid.uuid4())


class Event(BaseModel):
    """A domain event. The JSON value is the seed's shape:
    ``{"eventType": "Requested", "timestamp": 1708532929928, "id": 15, ...}``.

    ``event_id`` is not part of the value: it travels as the CloudEvents ``ce_id``
    header, like the other envelope attributes.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    topic: ClassVar[str]
    context: ClassVar[str]
    registry: ClassVar[dict[str, type[Event]]] = {}

    event_id: str = Field(default_factory=new_event_id, exclude=True)
    timestamp: int = Field(default_factory=now_ms)
    id: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.endswith("Event"):
            Event.registry[cls.ce_type()] = cls

    @classmethod
    def event_type(cls) -> str:
        return cls.__name__

    @classmethod
    def ce_type(cls) -> str:
        return f"nocode.{cls.context}.{cls.__name__}"

    @property
    def key(self) -> str:
        """Partition key: the request the event is about, so its events stay in order."""
        return str(self.id)

    def to_value(self) -> dict[str, Any]:
        return {"eventType": self.event_type(), **self.model_dump(by_alias=True, mode="json")}


def contract_for(ce_type: str) -> type[Event] | None:
    return Event.registry.get(ce_type)
