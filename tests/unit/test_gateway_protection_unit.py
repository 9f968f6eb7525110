"""The gateway's rate limiter, CORS policy and breakers, without a server (a fake clock)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.breakers import upstream_breakers
from gateway.cors import CorsPolicy
from gateway.rate_limit import RATE_LIMITER, RateLimiter, rate_limit_middleware
from gateway.settings import GatewaySettings
from gateway.state import IDENTITY
from servicekit.auth import Identity


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refused_with_time_until_next_token() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("alice") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("alice") == pytest.approx(0.5)
    clock.now += 0.25
    assert limiter.acquire("alice") == pytest.approx(0.25)


def test_refill_at_the_rate_up_to_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    for _ in range(3):
        limiter.acquire("alice")
    clock.now += 0.5
    assert limiter.acquire("alice") == 0.0
    assert limiter.acquire("alice") > 0
    clock.now += 3600
    assert [limiter.acquire("alice") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("alice") > 0


def test_refused_attempts_do_not_use_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    limiter.acquire("alice")
    for _ in range(100):
        assert limiter.acquire("alice") > 0
    clock.now += 1.0
    assert limiter.acquire("alice") == 0.0


def test_callers_have_separate_buckets() -> None:
    limiter = RateLimiter(1.0, 1, clock=Clock())
    assert limiter.acquire("alice") == 0.0
    assert limiter.acquire("alice") > 0
    assert limiter.acquire("bob") == 0.0


def test_idle_buckets_are_evicted() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 5, clock=clock)  # an empty bucket is full again after 0.5 s
    for i in range(1000):
        limiter.acquire(f"user-{i}")
    assert len(limiter) == 1000
    clock.now += 0.5
    limiter.acquire("late")
    assert len(limiter) == 1


def test_recently_used_buckets_are_kept() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 5, clock=clock)
    limiter.acquire("old")
    clock.now += 0.3
    limiter.acquire("recent")
    clock.now += 0.3  # "old" idle 0.6 s: full again; "recent" idle 0.3 s: not yet
    limiter.acquire("new")
    assert len(limiter) == 2


def test_key_count_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 100, max_keys=10, clock=clock)
    for i in range(50):
        limiter.acquire(f"user-{i}")
    assert len(limiter) == 10
    # The most recently used stay; a busy caller is not the one evicted.
    for _ in range(100):
        limiter.acquire("busy")
        limiter.acquire(f"other-{clock.now}")
        clock.now += 0.001
    assert limiter.acquire("busy") > 0


@pytest.mark.parametrize(
    ("rate", "burst", "max_keys"), [(0.0, 1, 1), (-1.0, 1, 1), (1.0, 0, 1), (1.0, 1, 0)]
)
def test_limiter_refuses_meaningless_settings(rate: float, burst: int, max_keys: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst, max_keys=max_keys)


def test_cors_policy_allows_listed_origins_only() -> None:
    policy = CorsPolicy(["https://ui.example.com", "http://localhost:3000/"], 600)
    assert policy.allows("https://ui.example.com")
    assert policy.allows("http://localhost:3000")
    assert not policy.allows("https://evil.example.com")
    assert not policy.allows("https://ui.example.com.evil.example.com")
    assert not policy.allows("null")
    assert not policy.allows(None)
    assert CorsPolicy(["*"], 600).allows("https://anyone.example")


def test_one_breaker_per_upstream() -> None:
    settings = GatewaySettings(breaker_failures=3, breaker_reset_s=7)
    breakers = upstream_breakers(["http://a:1", "http://b:2", "http://a:1"], settings)
    assert sorted(breakers) == ["http://a:1", "http://b:2"]
    breaker = breakers["http://a:1"]
    assert (breaker.failure_threshold, breaker.reset_timeout_s) == (3, 7)


def test_protection_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_PER_S", "5")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_BURST", "7")
    monkeypatch.setenv("GATEWAY_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", '["https://ui.example.com"]')
    monkeypatch.setenv("GATEWAY_BREAKER_FAILURES", "2")
    monkeypatch.setenv("GATEWAY_BREAKER_RESET_S", "1.5")
    monkeypatch.setenv("GATEWAY_RETRIES", "0")
    settings = GatewaySettings()
    assert settings.rate_limit_per_s == 5
    assert settings.rate_limit_burst == 7
    assert settings.max_body_bytes == 2048
    assert settings.cors_origins == ["https://ui.example.com"]
    assert (settings.breaker_failures, settings.breaker_reset_s) == (2, 1.5)
    assert settings.retries == 0


def test_protection_defaults() -> None:
    settings = GatewaySettings()
    assert (settings.rate_limit_per_s, settings.rate_limit_burst) == (500, 1000)
    assert (settings.token_rate_limit_per_s, settings.token_rate_limit_burst) == (1, 10)
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.cors_origins == []
    assert (settings.breaker_failures, settings.breaker_reset_s) == (5, 10)
    assert settings.retries == 2


# The identity middleware's key is the plain string "identity" (aiohttp recommends typed keys).
@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
async def test_middleware_limits_by_verified_subject_else_by_address() -> None:
    app = web.Application()
    app[RATE_LIMITER] = RateLimiter(1.0, 1, clock=Clock())

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def request(identity: Identity | None) -> web.Request:
        req = make_mocked_request("GET", "/models", app=app)
        if identity is not None:
            req[IDENTITY] = identity
        return req

    alice, bob = Identity("alice", frozenset({"user"})), Identity("bob", frozenset({"user"}))
    assert (await rate_limit_middleware(request(alice), ok)).status == 200
    refused = await rate_limit_middleware(request(alice), ok)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    # Same address, another user: a bucket of its own; and no identity: the address's.
    assert (await rate_limit_middleware(request(bob), ok)).status == 200
    assert (await rate_limit_middleware(request(None), ok)).status == 200
    assert (await rate_limit_middleware(request(None), ok)).status == 429


def siege(limiter: RateLimiter, clock: Clock, users: int, latency_s: float, seconds: int) -> int:
    """``users`` clients with one token, each sending its next request as soon as the last
    is answered (siege without delay); the number of 429s they would get."""
    refused = 0
    steps = round(seconds / latency_s)
    for _ in range(steps):
        clock.now += latency_s
        refused += sum(limiter.acquire("user:test") > 0 for _ in range(users))
    return refused


def test_default_limit_lets_the_seeds_load_test_through_yet_limits_a_flood() -> None:
    settings = GatewaySettings()
    assert (settings.rate_limit_per_s, settings.rate_limit_burst) == (500, 1000)

    def limiter() -> tuple[RateLimiter, Clock]:
        clock = Clock()
        return RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, clock=clock), clock

    # The seed's siege: 25 users on one token for 30 s. Even answered in 55 ms each (455
    # req/s, past what the whole platform serves on 2 cores), no request is refused.
    assert siege(*limiter(), users=25, latency_s=0.055, seconds=30) == 0
    # One token flooding at twice the limit is still cut down to the limit.
    flood, clock = limiter()
    refused = siege(flood, clock, users=25, latency_s=0.025, seconds=10)  # 1000 req/s
    assert 10 * 1000 - 10 * 500 - 1000 - 50 <= refused <= 10 * 1000 - 10 * 500 - 1000 + 50
