"""Headless Chromium for page tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download cannot run here (closed network), so the system browser is
launched by path. The flags keep Chromium from reaching out to Google's hosts, which this
machine refuses. Screenshots go to ``tests/artifacts/screenshots/`` so a failing run leaves
pictures behind; the README shows copies from ``docs/screenshots/``.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def chromium_path() -> str:
    """The system Chromium; a clear failure (not a skip) when bootstrap did not install it."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("Debian's chromium is not installed: run scripts/bootstrap as root")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """One headless browser for the duration of the block."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path(), headless=True, args=list(CHROMIUM_FLAGS)
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def page(width: int = 1280, height: int = 800) -> AsyncIterator[Page]:
    """A fresh page (own cookies and storage) in a fresh browser."""
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": width, "height": height})
        try:
            yield await context.new_page()
        finally:
            await context.close()


async def screenshot(target: Page, name: str) -> Path:
    """Save a full-page PNG under tests/artifacts/screenshots and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await target.screenshot(path=str(path), full_page=True)
    return path
