"""``nocode demo`` against the whole platform: it must tell the saga and find it held."""

from __future__ import annotations

import pytest

from nocode.demo import Demo, DemoSettings
from tests.connected.whole_platform import whole_platform
from tests.support import ISSUER

pytestmark = pytest.mark.connected


async def test_the_demo_runs_the_seed_scenario_and_every_check_holds(
    postgres_admin_url: str, topics: str
) -> None:
    async with whole_platform(postgres_admin_url, topics) as (_, gateway):
        lines: list[str] = []
        settings = DemoSettings(gateway_url=str(gateway.base_url), kafka_bootstrap_servers=topics)
        assert await Demo(settings, out=lines.append, signer=ISSUER).run(), "\n".join(lines)

    text = "\n".join(lines)
    checks = [line.strip() for line in text.split("Checks:")[1].strip().splitlines()]
    assert checks == [
        "✓ model request 1 completed",
        "✓ target request 1 completed",
        "✓ LMS bulk send accepted for target 1",
        "✓ model request 2 stays requestCanceled",
        "✓ no ModelCompleted for model request 2",
        "✓ model request 3 rejected",
    ]
    # What happened was shown as it happened: events, chat messages and the read model.
    assert "event  core.events   ModelCompleted" in text
    assert "event  core.events   JobCanceled" in text
    assert (
        'chat   Model request #2 "' in text and "→ requestCanceled — demo: changed my mind" in text
    )
    assert "lms=sent" in text
