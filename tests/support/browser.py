"""Debian's chromium driven by Playwright for the admin page's browser tests: how it is launched, where the
screenshots go, and signing in through the login form. The `browser` fixture is in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests.support.admin import TOKEN

__all__ = ["ARTIFACTS", "CHROMIUM", "CHROMIUM_ARGS", "sign_in_page"]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]


async def sign_in_page(page: Page, base: str) -> None:
    """Open the admin page, be sent to the login form, sign in with the test token, land on the overview."""
    await page.goto(f"{base}/admin/")
    await expect(page).to_have_url(f"{base}/admin/login")
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base}/admin/")
