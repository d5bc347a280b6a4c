"""A real browser for tests: Debian's /usr/bin/chromium, headless, driven by Playwright's sync API.

Playwright never downloads a browser here: Chromium is launched by executable_path (installed by
scripts/ssh-test-hosts-setup.sh). Every page's requests go through a route that lets loopback
hosts through and aborts anything else, recording it, so a test can assert that its page reached
for nothing outside this machine. Screenshots go to test-artifacts/screenshots/<test>.png.

The fixtures are registered once, by tests/conftest.py (a module that imported them would get a
session-scoped Playwright of its own, and a second one cannot start in the same thread); a test
asks for ``loopback_page`` and ``blocked_requests`` and imports what else it uses:
    from tests.support.browser import BlockedRequests, screenshot
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Without these, Chromium reaches out for updates, sync, field trials and QUIC probes; on a closed
# network those connections are refused (and would be traffic to outside hosts anyway).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@dataclass
class BlockedRequests:
    """The URLs the route refused (non-loopback hosts), in order."""

    urls: list[str] = field(default_factory=list)


def is_loopback(url: str) -> bool:
    """True for this machine's own addresses (and data:, blob:, about: URLs, which go nowhere)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = parts.hostname or ""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost, say "127.example.com"
        return False


@pytest.fixture(scope="session")
def playwright_sync() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def chromium(playwright_sync: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, for the whole session."""
    assert CHROMIUM.is_file(), f"{CHROMIUM} missing: run scripts/ssh-test-hosts-setup.sh as root"
    browser = playwright_sync.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
    )
    yield browser
    browser.close()


@pytest.fixture
def blocked_requests() -> BlockedRequests:
    return BlockedRequests()


@pytest.fixture
def loopback_page(chromium: Browser, blocked_requests: BlockedRequests) -> Iterator[Page]:
    """A page in a fresh context whose every non-loopback request is aborted and recorded."""
    context = chromium.new_context(viewport={"width": 900, "height": 600})

    def guard(route: Route) -> None:
        url = route.request.url
        if is_loopback(url):
            route.continue_()
        else:
            blocked_requests.urls.append(url)
            route.abort("blockedbyclient")

    context.route("**/*", guard)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page: Page, request: pytest.FixtureRequest, suffix: str = "") -> Path:
    """Save the page as test-artifacts/screenshots/<test name><suffix>.png; returns the path."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name) + suffix
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
