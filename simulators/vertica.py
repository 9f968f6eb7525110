"""Vertica: the training data warehouse, served in batches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from simulators.faults import Faults, FaultSwitch

TOTAL_ROWS = 1000


def vertica_router() -> APIRouter:
    router = APIRouter(prefix="/vertica", tags=["vertica"])
    switch = FaultSwitch("vertica", 503)
    batches_served: list[dict[str, int]] = []

    @router.get("/training-data")
    async def training_data(
        model_request_id: Annotated[int, Query(alias="modelRequestId", gt=0)],
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> dict[str, object]:
        await switch.before_answer()
        end = min(offset + limit, TOTAL_ROWS)
        rows = [
            # Deterministic synthetic customers, so runs are repeatable.
            {
                "customerId": n,
                "age": 20 + (n * 7 + model_request_id) % 50,
                "segment": "ABCD"[(n + model_request_id) % 4],
                "score": round(((n * 31 + model_request_id) % 1000) / 1000, 3),
            }
            for n in range(offset, end)
        ]
        batches_served.append(
            {"modelRequestId": model_request_id, "offset": offset, "rows": len(rows)}
        )
        return {"rows": rows, "nextOffset": end if end < TOTAL_ROWS else None, "total": TOTAL_ROWS}

    @router.get("/batches")
    async def batches() -> list[dict[str, int]]:
        """The batches served so far (what the platform pulled)."""
        return batches_served

    @router.put("/_faults")
    async def set_faults(faults: Faults) -> Faults:
        return switch.set(faults)

    @router.delete("/_received", status_code=204)
    async def clear() -> None:
        batches_served.clear()

    return router
