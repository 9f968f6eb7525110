"""Swagger UI at the gateway's /docs in a real headless Chromium: it renders the
operations of the aggregated /openapi.json (the gateway's own and the services') and no
request leaves 127.0.0.1 (no CDN, no online validator), with no error in the console."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Route, expect

from tests.browser.conftest import new_context
from tests.connected.whole_platform import Platform, whole_platform

pytestmark = pytest.mark.connected


@pytest.fixture(scope="module")
async def platform(
    postgres_admin_url: str, module_topics: str
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    async with whole_platform(postgres_admin_url, module_topics) as running:
        yield running


async def test_docs_render_every_operation_from_local_assets_only(
    platform: tuple[Platform, httpx.AsyncClient], browser: Browser, artifacts: Path
) -> None:
    _, gateway = platform
    base = str(gateway.base_url).rstrip("/")
    operations = sum(
        len(item) for item in (await gateway.get("/openapi.json")).json()["paths"].values()
    )
    context = await new_context(browser)
    requested: list[str] = []
    errors: list[str] = []
    try:
        page = await context.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        async def local_only(route: Route) -> None:  # anything else is recorded, not sent
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                await route.continue_()
            else:
                await route.abort()

        await page.route("**/*", local_only)
        await page.goto(base + "/docs")
        blocks = page.locator(".opblock")
        await expect(blocks).to_have_count(operations)
        for method, path in (
            ("POST", "/auth/token"),
            ("GET", "/users"),
            ("GET", "/menus"),
            ("POST", "/models"),
            ("PUT", "/targets/{id}/reject"),
            ("GET", "/myRequests"),
        ):
            block = page.locator(f".opblock-{method.lower()}").filter(
                has=page.locator(".opblock-summary-path", has_text=path)
            )
            await expect(block.first).to_be_visible()
        # One operation opened: its documented answers include the 401 with the hint.
        token = page.locator(".opblock-post").filter(
            has=page.locator(".opblock-summary-path[data-path='/models']")
        )
        await token.first.locator(".opblock-summary").click()
        await expect(token.first.locator(".responses-table")).to_contain_text("/auth/token")
        await page.screenshot(path=str(artifacts / "api-docs.png"))
    finally:
        await context.close()
    outside = [url for url in requested if urlsplit(url).hostname != "127.0.0.1"]
    assert requested and not outside, outside
    assert f"{base}/openapi.json" in requested
    assert not errors, errors
