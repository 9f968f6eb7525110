"""The one fault switch every simulator has: ``PUT /{system}/_faults``."""

from __future__ import annotations

import asyncio

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Faults(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    fail_next: int = Field(0, ge=0, description="fail this many calls, then answer normally")
    fail_always: bool = False
    delay_s: float = Field(0.0, ge=0, le=60, description="wait this long before answering")
    status: int | None = Field(
        None, ge=400, le=599, description="the failing answer's status (default: the system's)"
    )


class FaultSwitch:
    def __init__(self, system: str, failure_status: int) -> None:
        self.system = system
        self.failure_status = failure_status
        self.faults = Faults()
        self.failures = 0

    def set(self, faults: Faults) -> Faults:
        self.faults = faults
        return faults

    async def before_answer(self) -> None:
        """Delay and/or fail this call as the switch says."""
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        if self.faults.fail_always or self.faults.fail_next > 0:
            if self.faults.fail_next > 0:
                self.faults = self.faults.model_copy(
                    update={"fail_next": self.faults.fail_next - 1}
                )
            self.failures += 1
            raise HTTPException(
                self.faults.status or self.failure_status,
                f"{self.system} simulator: failure switched on for tests",
            )
