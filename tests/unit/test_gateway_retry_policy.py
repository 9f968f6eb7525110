"""The proxy's retry policy on its own: which failures of which methods are sent again."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.retry_policy import RetryPolicy
from gateway.settings import GatewaySettings
from servicekit.resilience import Backoff

POLICY = RetryPolicy(retries=2, backoff=Backoff(0.0, 0.0))
CONNECTION_LOST = aiohttp.ServerDisconnectedError()
REFUSED = aiohttp.ClientConnectorError(
    aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
    ConnectionRefusedError(111, "refused"),
)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reads_are_sent_again_after_a_lost_connection_until_the_attempts_run_out(
    method: str,
) -> None:
    assert POLICY.attempts(method) == 3
    for error in (CONNECTION_LOST, REFUSED):
        assert [POLICY.retries_after(method, n, error) for n in (1, 2, 3)] == [True, True, False]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_commands_are_never_sent_twice(method: str) -> None:
    assert POLICY.attempts(method) == 1
    assert not POLICY.retries_after(method, 1, REFUSED)


def test_timeouts_and_bad_answers_are_not_retried() -> None:
    for error in (
        aiohttp.ServerTimeoutError(),
        TimeoutError(),
        aiohttp.ClientPayloadError("truncated"),
    ):
        assert not POLICY.retries_after("GET", 1, error), error


def test_no_retries_when_set_to_zero() -> None:
    policy = RetryPolicy(retries=0, backoff=Backoff(0.05, 0.5))
    assert policy.attempts("GET") == 1
    assert not policy.retries_after("GET", 1, CONNECTION_LOST)
    assert GatewaySettings().retries == 2  # the default: three attempts for a read
