"""What a smoke line shows: an answer with nothing to read is quoted and named, so the line never
ends at the arrow. Against a loopback stand-in that speaks the chat completions wire format
(a real engine never answers blank on demand)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployer.events import EventBus, EventKind
from deployer.manifest.models import SmokeCheck
from deployer.smoke.checks import run_checks

ANSWERS = {"blank": "", "spaces": " \n\t ", "paris": "The capital of France is Paris."}


class _Chat(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = ANSWERS[body["messages"][-1]["content"]]
        payload = json.dumps(
            {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
                "usage": {"completion_tokens": 3},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _lines(base_url: str, question: str, contains: str | None = None) -> tuple[list[str], str]:
    check = SmokeCheck.model_validate(
        {"chat": question, **({"expect": {"contains": contains}} if contains else {})}
    )
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe(lambda e: seen.append(e.message) if e.kind == EventKind.LOG else None)
    report = run_checks(base_url, "m", [check], api_key=None, events=bus)
    return seen, report.describe()


@pytest.mark.parametrize(
    ("question", "shown"),
    [
        ("blank", '"" (empty answer)'),
        ("spaces", '" \\n\\t " (whitespace only)'),
        ("paris", "The capital of France is Paris."),
    ],
)
def test_the_answer_is_always_visible(base_url: str, question: str, shown: str) -> None:
    lines, described = _lines(base_url, question)
    assert lines == [f"pass: chat: {question} -> {shown}"]
    assert described.endswith(f"answer: {shown}")


def test_a_blank_answer_fails_an_expectation_and_says_so(base_url: str) -> None:
    lines, described = _lines(base_url, "spaces", contains="Paris")
    assert lines == ['FAIL: chat: spaces -> " \\n\\t " (whitespace only)']
    assert "answer does not contain 'Paris'" in described
