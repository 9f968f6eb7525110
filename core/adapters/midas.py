"""MIDAS, which sends the LMS bulk messages for an extracted target audience."""

from __future__ import annotations

import aiohttp
import orjson

# Answers worth trying again: MIDAS is busy or down, or asks us to slow down.
RETRYABLE = frozenset({408, 425, 429})


class MidasRefused(Exception):
    """MIDAS did not take the send this time (timeout, unreachable, 5xx): try again later."""


class MidasRejected(Exception):
    """MIDAS rejected the send itself (a 4xx): trying again would not help."""


class Midas:
    def __init__(self, http: aiohttp.ClientSession, base_url: str, timeout_s: float) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send_lms(
        self, idempotency_key: str, target_id: int, user_id: str, audience_size: int, message: str
    ) -> str:
        """``POST {MIDAS_URL}/lms/bulk``; returns MIDAS's send id. The idempotency key makes a
        retry after a lost answer the same send, not a second one."""
        body = {
            "targetId": target_id,
            "userId": user_id,
            "audienceSize": audience_size,
            "message": message,
        }
        try:
            async with self.http.post(
                f"{self.base_url}/lms/bulk",
                json=body,
                headers={"Idempotency-Key": idempotency_key},
                timeout=self.timeout,
            ) as response:
                status, answer = response.status, await response.read()
        except TimeoutError as exc:
            raise MidasRefused(f"midas timed out after {self.timeout_s}s") from exc
        except aiohttp.ClientError as exc:
            raise MidasRefused(f"midas unreachable: {type(exc).__name__}") from exc
        if status >= 500 or status in RETRYABLE:
            raise MidasRefused(f"midas answered {status}")
        if status >= 400 or status < 200:
            text = answer[:200].decode(errors="replace")
            raise MidasRejected(f"midas rejected the send: {status} {text}")
        try:
            return str(orjson.loads(answer)["sendId"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MidasRefused(f"midas answered {status} without a sendId") from exc
