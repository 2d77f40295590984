from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from webhelp import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Live, chromium_missing, live_bridge


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_bridge(tmp_path) as lv:
        yield lv


@pytest.fixture
async def browser_page(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh page in Debian's chromium; records dialogs and console errors, and
    leaves a screenshot named after the test in test-artifacts/web/."""
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            page.dialogs = []  # type: ignore[attr-defined]
            page.console_errors = []  # type: ignore[attr-defined]

            async def on_dialog(d: Any) -> None:
                page.dialogs.append(d.message)  # type: ignore[attr-defined]
                await d.dismiss()

            page.on("dialog", on_dialog)
            page.on("console", lambda m: m.type == "error"
                    and page.console_errors.append(m.text))  # type: ignore[attr-defined]
            yield page
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            try:
                await page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"),
                                      full_page=True)
            except Exception:
                pass
        finally:
            await browser.close()
