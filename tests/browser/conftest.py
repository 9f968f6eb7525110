"""Browser tests: Debian's Chromium, headless, driven by Playwright, against the whole
platform (tests/connected/whole_platform.py) with the console behind its gateway.

One platform and one browser per module. Screenshots go to ``test-artifacts/console/``
(gitignored); the README's copies are in docs/screenshots/.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from contracts.topics import ALL_TOPICS
from nocode.embedded_broker import EmbeddedBroker
from servicekit.kafka import ensure_topics
from tests.support import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@pytest.fixture(scope="module")
async def module_topics(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A broker for the module's one platform."""
    server = EmbeddedBroker(free_port(), log_file=tmp_path_factory.mktemp("broker") / "log")
    server.start()
    try:
        await ensure_topics(server.bootstrap_servers, ALL_TOPICS, 3, 1)
        yield server.bootstrap_servers
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does)")
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


async def new_context(browser: Browser, locale: str = "en-US") -> BrowserContext:
    context = await browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    return context


async def sign_in(context: BrowserContext, base: str, username: str, password: str) -> Page:
    page = await context.new_page()
    await page.goto(base + "/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/ui/requests**")
    return page
