"""The model service, asked over HTTP whether a request is still wanted (compensation check)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import orjson


class ModelUnavailable(Exception):
    """No usable answer from the model service (timeout, unreachable, unexpected status)."""


class ModelService:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        timeout_s: float,
        token: Callable[[], str] | None = None,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.token = token  # core's own service token: model verifies every caller

    async def request_state(self, request_id: str) -> str | None:
        """The model request's state (``GET /models/{id}``); None if model does not know it."""
        try:
            headers = {"Authorization": f"Bearer {self.token()}"} if self.token else {}
            async with self.http.get(
                f"{self.base_url}/models/{request_id}", timeout=self.timeout, headers=headers
            ) as response:
                status, answer = response.status, await response.read()
        except TimeoutError as exc:
            raise ModelUnavailable(f"model timed out after {self.timeout_s}s") from exc
        except aiohttp.ClientError as exc:
            raise ModelUnavailable(f"model unreachable: {type(exc).__name__}") from exc
        if status == 404:
            return None
        if status != 200:
            raise ModelUnavailable(f"model answered {status}")
        try:
            return str(orjson.loads(answer)["state"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelUnavailable(f"model sent an unreadable request: {exc!r}") from exc
