"""Vertica, where training data comes from, read in batches over its HTTP endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson


class VerticaUnavailable(Exception):
    """Vertica did not answer in time or answered with an error: the step failed."""


@dataclass(frozen=True)
class Batch:
    rows: list[dict[str, Any]]
    next_offset: int | None
    total: int


class Vertica:
    def __init__(self, http: aiohttp.ClientSession, base_url: str, timeout_s: float) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def training_batch(self, model_request_id: str, offset: int, limit: int) -> Batch:
        """``GET {VERTICA_URL}/training-data?modelRequestId=&offset=&limit=``."""
        params = {"modelRequestId": model_request_id, "offset": offset, "limit": limit}
        try:
            async with self.http.get(
                f"{self.base_url}/training-data", params=params, timeout=self.timeout
            ) as response:
                status, answer = response.status, await response.read()
        except TimeoutError as exc:
            raise VerticaUnavailable(f"vertica timed out after {self.timeout_s}s") from exc
        except aiohttp.ClientError as exc:
            raise VerticaUnavailable(f"vertica unreachable: {type(exc).__name__}") from exc
        if status != 200:
            raise VerticaUnavailable(f"vertica answered {status}")
        try:
            body = orjson.loads(answer)
            return Batch(
                rows=list(body["rows"]),
                next_offset=body.get("nextOffset"),
                total=int(body.get("total", 0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise VerticaUnavailable(f"vertica sent an unreadable batch: {exc!r}") from exc
