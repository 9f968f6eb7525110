"""The event base class and the registry that maps a CloudEvents type to its contract."""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def now_ms() -> int:
    return int(time.time() * 1000)


def new_event_id() -> str:
    return str(uuid.uuid4())


OMIT_IF_UNSET = "omitIfUnset"


def extension(description: str) -> Any:
    """An optional field added to a contract after its first version: it defaults to None
    (events written before it read fine) and is left out of the value while None, so an
    event that does not set it keeps its original JSON shape exactly."""
    return Field(None, description=description, json_schema_extra={OMIT_IF_UNSET: True})


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
    version: ClassVar[int] = 1
    """The contract's version: raised when a change is one its consumers could not read
    (``contracts.compat``). The previous version's class stays, named in ``event_name``."""
    event_name: ClassVar[str | None] = None
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
        """The ``eventType`` in the value: the class name, unless an older version's
        class names the event it keeps (``event_name``)."""
        return cls.__dict__.get("event_name") or cls.__name__

    @classmethod
    def ce_type(cls) -> str:
        """The CloudEvents type; version 1 keeps the original name, later ones add ``.vN``."""
        base = f"nocode.{cls.context}.{cls.event_type()}"
        return base if cls.version == 1 else f"{base}.v{cls.version}"

    @property
    def key(self) -> str:
        """Partition key: the request the event is about, so its events stay in order."""
        return str(self.id)

    def to_value(self) -> dict[str, Any]:
        value = self.model_dump(by_alias=True, mode="json")
        for name in _unset_extensions(type(self)):
            if value.get(name, 0) is None:
                del value[name]
        return {"eventType": self.event_type(), **value}


@functools.cache
def _unset_extensions(cls: type[Event]) -> tuple[str, ...]:
    """The wire names of ``cls``'s :func:`extension` fields."""
    return tuple(
        f.alias or name
        for name, f in cls.model_fields.items()
        if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get(OMIT_IF_UNSET)
    )


def contract_for(ce_type: str) -> type[Event] | None:
    return Event.registry.get(ce_type)
