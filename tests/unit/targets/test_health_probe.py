"""``targets.base.answers``: the one health probe the local and ssh targets use, against a real
HTTP server on the loopback interface."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployer.targets.base import answers

STATUSES = {"/health": 200, "/v1/models": 401, "/starting": 503}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.send_response(STATUSES.get(path, 404))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("path", "up"),
    [
        ("/health", True),
        ("/v1/models", True),  # llama.cpp guards it with the key: up, and enforcing it
        ("/health?probe=1", True),
        ("/starting", False),
        ("/missing", False),
    ],
)
def test_answers_by_status(base: str, path: str, up: bool) -> None:
    assert answers(base + path) is up


def test_nothing_listening_is_not_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert answers(f"http://127.0.0.1:{port}/health", timeout=1.0) is False


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        assert answers(f"http://127.0.0.1:{port}/health", timeout=0.3) is False


@pytest.mark.parametrize("url", ["", "not a url", "http:///health"])
def test_no_host_is_not_up(url: str) -> None:
    assert answers(url) is False
