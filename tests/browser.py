"""Playwright on Debian's chromium: a phone-sized WeChat browser for end-to-end tests."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# WeChat's in-app browser identifies itself with MicroMessenger; H5 pages may rely on it.
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 MicroMessenger/8.0.50(0x1800323a) NetType/WIFI Language/zh_CN")
ANDROID_WECHAT_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/130.0.0.0 Mobile Safari/537.36 XWEB/1300 MMWEBSDK/20240404 MicroMessenger/8.0.50 "
                     "NetType/WIFI Language/zh_CN")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@contextmanager
def phone_page(browser: Browser, user_agent: str, timeout_ms: int) -> Iterator[tuple[Page, list[str]]]:
    """A page in a phone-sized context, and the problems it reported: every page runs under a
    Content-Security-Policy with no inline script or style, so anything the browser refuses is a
    page that silently lost a script or a style; an uncaught error is a broken page."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  user_agent=user_agent, locale="zh-CN", is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        yield page, problems
    finally:
        context.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """iOS WeChat's browser (as far as a user agent goes)."""
    with phone_page(browser, WECHAT_UA, 10_000) as (page, problems):
        yield page
    assert problems == [], problems


@pytest.fixture
def android(browser: Browser) -> Iterator[Page]:
    """Android WeChat's browser: Chromium with Media Source Extensions, where lectures play through hls.js."""
    with phone_page(browser, ANDROID_WECHAT_UA, 15_000) as (page, problems):
        yield page
    assert problems == [], problems


def throttle(page: Page, kbps: int, latency_ms: int = 60) -> None:
    """Slow the page's network as a weak campus link would (Chromium's DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": latency_ms,
        "downloadThroughput": kbps * 1000 / 8, "uploadThroughput": kbps * 1000 / 8})
