"""The vendored htmx and uPlot work in a real browser, served over loopback from the package."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from deployer.web import static_dir, vendored_manifest
from tests.support.browser import BlockedRequests, screenshot

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>assets</title>
<link rel="stylesheet" href="/static/vendor/uplot/uPlot.min.css">
<script src="/static/vendor/htmx/htmx.min.js"></script>
<script src="/static/vendor/uplot/uPlot.iife.min.js"></script>
</head><body>
<h1>vendored assets</h1>
<div id="chart"></div>
<button id="load" hx-get="/fragment.html" hx-target="#swap">load</button>
<div id="swap">before</div>
<img id="outside" src="https://cdn.example.com/pixel.png" alt="">
<script>
  const xs = [1, 2, 3, 4, 5, 6, 7, 8], ys = [3, 1, 4, 1, 5, 9, 2, 6];
  window.chart = new uPlot({width: 600, height: 300, title: "tokens/s",
    series: [{}, {label: "tokens/s", stroke: "red", width: 2}]},
    [xs, ys], document.getElementById("chart"));
</script>
</body></html>
"""


def _pinned_htmx_version() -> str:
    packages = json.loads(vendored_manifest().read_text())["packages"]
    return next(p["version"] for p in packages if p["package"] == "htmx.org")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """tmp_path served on 127.0.0.1: the test page, a fragment, and static/ -> the package's."""
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "fragment.html").write_text('<p id="swapped">swapped by htmx</p>')
    (tmp_path / "static").symlink_to(static_dir(), target_is_directory=True)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_htmx_and_uplot_run_from_the_package(
    site: str,
    loopback_page: Page,
    blocked_requests: BlockedRequests,
    request: pytest.FixtureRequest,
) -> None:
    page = loopback_page
    page.goto(f"{site}/index.html", wait_until="load")

    assert page.evaluate("window.htmx.version") == _pinned_htmx_version()

    # uPlot drew into its canvas: count pixels that are not transparent.
    painted = page.evaluate(
        """() => {
            const canvas = document.querySelector('#chart canvas');
            const ctx = canvas.getContext('2d');
            const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
            let n = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) n++;
            return {n, w: canvas.width, h: canvas.height};
        }"""
    )
    assert painted["w"] > 0
    assert painted["h"] > 0
    assert painted["n"] > 500, painted
    screenshot(page, request, "-chart")

    # htmx's hx-get swaps the fragment served over loopback into #swap.
    page.click("#load")
    page.wait_for_selector("#swap #swapped", timeout=10_000)
    assert page.inner_text("#swap") == "swapped by htmx"
    screenshot(page, request, "-swapped")

    # The page's one outside URL was refused by the harness, and nothing else went out.
    assert blocked_requests.urls == ["https://cdn.example.com/pixel.png"]
    # The vendored stylesheet applied too (its .u-legend rule; a browser default would be "start").
    assert page.evaluate("getComputedStyle(document.querySelector('.u-legend')).textAlign") == (
        "center"
    )
