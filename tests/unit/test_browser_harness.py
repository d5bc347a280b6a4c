"""The browser harness lets only this machine's addresses through."""

from __future__ import annotations

import pytest

from tests.support.browser import CHROMIUM_ARGS, is_loopback


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/x",
        "http://127.8.9.10/",
        "http://localhost:1/",
        "http://[::1]:9/",
        "data:text/plain,hi",
        "about:blank",
    ],
)
def test_loopback_urls_pass(url: str) -> None:
    assert is_loopback(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/htmx.js",
        "http://127.example.com/",
        "http://localhost.example.com/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "https://[2001:db8::1]/",
        "ws://203.0.113.5/",
    ],
)
def test_other_urls_are_blocked(url: str) -> None:
    assert not is_loopback(url)


def test_chromium_is_told_to_stay_quiet() -> None:
    for flag in ("--disable-background-networking", "--disable-component-update", "--no-sandbox"):
        assert flag in CHROMIUM_ARGS
