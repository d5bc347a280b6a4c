"""Smoke checks: expectations against answers, the report, and the requests deployer sends.

The HTTP server started here stands in for the engine only to test the request shapes deployer
sends and the expectation logic (status codes, latency, unreachable endpoints). It is not a model:
the real vLLM server is tested in tests/integration.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deployer import secrets
from deployer.events import Event, EventBus, EventKind
from deployer.manifest.models import Expectation, SmokeCheck
from deployer.smoke.checks import CheckResult, SmokeReport, _evaluate, _json_failures, run_checks

API_KEY = "sk-smoke-test-key-0123"
ANSWER = "The capital of France is Paris."


@pytest.fixture(autouse=True)
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_values", set())


def expect(**fields: Any) -> Expectation:
    """An Expectation from manifest keys (camelCase)."""
    return Expectation.model_validate(fields)


def check(**fields: Any) -> SmokeCheck:
    return SmokeCheck.model_validate(fields)


# --- expectations ------------------------------------------------------------------------------

CITY_SCHEMA = {
    "type": "object",
    "required": ["city"],
    "properties": {"city": {"type": "string"}},
}

# (expectation, answer, vector) -> the failures, in order
EVALUATE = [
    pytest.param({}, "anything", None, [], id="no-expectations"),
    pytest.param({"contains": "paris"}, ANSWER, None, [], id="contains-ignores-case"),
    pytest.param({"contains": "PARIS"}, ANSWER, None, [], id="contains-upper"),
    pytest.param(
        {"contains": "London"},
        ANSWER,
        None,
        ["answer does not contain 'London'"],
        id="contains-missing",
    ),
    pytest.param({"contains": ["Paris", "france"]}, ANSWER, None, [], id="contains-all-of-list"),
    pytest.param(
        {"contains": ["Paris", "Seine", "Louvre"]},
        ANSWER,
        None,
        ["answer does not contain 'Seine'", "answer does not contain 'Louvre'"],
        id="contains-list-names-each-missing",
    ),
    pytest.param({"notContains": "london"}, ANSWER, None, [], id="not-contains-ok"),
    pytest.param(
        {"notContains": "PARIS"}, ANSWER, None, ["answer contains 'PARIS'"], id="not-contains-case"
    ),
    pytest.param(
        {"notContains": ["Berlin", "paris"]},
        ANSWER,
        None,
        ["answer contains 'paris'"],
        id="not-contains-any-of-list",
    ),
    pytest.param({"regex": r"\bParis\b"}, ANSWER, None, [], id="regex-match"),
    pytest.param({"regex": r"\d{4}"}, "Built in 1889.", None, [], id="regex-search-anywhere"),
    pytest.param(
        {"regex": r"^\d+$"}, ANSWER, None, [r"answer does not match /^\d+$/"], id="regex-miss"
    ),
    pytest.param(
        {"regex": "paris"}, ANSWER, None, ["answer does not match /paris/"], id="regex-keeps-case"
    ),
    pytest.param({"regex": "(?i)paris"}, ANSWER, None, [], id="regex-inline-ignorecase"),
    pytest.param({"jsonSchema": CITY_SCHEMA}, '{"city": "Paris"}', None, [], id="json-valid"),
    pytest.param(
        {"jsonSchema": CITY_SCHEMA},
        '```json\n{"city": "Paris"}\n```',
        None,
        [],
        id="json-fenced",
    ),
    pytest.param(
        {"jsonSchema": CITY_SCHEMA},
        '```\n{"city": "Paris"}\n```',
        None,
        [],
        id="json-fenced-no-language",
    ),
    pytest.param(
        {"jsonSchema": CITY_SCHEMA},
        '  \n{"city": "Paris"}\n\n',
        None,
        [],
        id="json-surrounding-whitespace",
    ),
    pytest.param(
        {"jsonSchema": CITY_SCHEMA},
        "The city is Paris",
        None,
        ["answer is not JSON: Expecting value at position 0"],
        id="json-not-json",
    ),
    pytest.param(
        {"jsonSchema": CITY_SCHEMA},
        '{"city": 75}',
        None,
        ["JSON answer invalid at /city: 75 is not of type 'string'"],
        id="json-wrong-type",
    ),
    pytest.param(
        {"dimensions": 4}, "[4 dimensions]", [0.1, 0.2, 0.3, 0.4], [], id="dimensions-match"
    ),
    pytest.param(
        {"dimensions": 384},
        "[3 dimensions]",
        [0.1, 0.2, 0.3],
        ["embedding has 3 dimensions, expected 384"],
        id="dimensions-mismatch",
    ),
    pytest.param(
        {"dimensions": 8},
        ANSWER,
        None,
        ["embedding has 0 dimensions, expected 8"],
        id="dimensions-without-vector",
    ),
    pytest.param(
        {"contains": "Berlin", "notContains": "Paris", "regex": "^Berlin"},
        ANSWER,
        None,
        [
            "answer does not contain 'Berlin'",
            "answer contains 'Paris'",
            "answer does not match /^Berlin/",
        ],
        id="every-condition-reported",
    ),
]


@pytest.mark.parametrize(("fields", "answer", "vector", "failures"), EVALUATE)
def test_evaluate(
    fields: dict[str, Any], answer: str, vector: list[float] | None, failures: list[str]
) -> None:
    assert _evaluate(expect(**fields), answer, vector) == failures


PEOPLE_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["people"],
    "properties": {
        "people": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "age"],
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            },
        }
    },
}

# answer -> the failures for PEOPLE_SCHEMA
JSON_FAILURES = [
    pytest.param('{"people": [{"name": "Ada", "age": 36}]}', [], id="valid"),
    pytest.param(
        '{"people": [{"name": "Ada", "age": "36"}]}',
        ["JSON answer invalid at /people/0/age: '36' is not of type 'integer'"],
        id="nested-path",
    ),
    pytest.param(
        "{}",
        ["JSON answer invalid at /: 'people' is a required property"],
        id="root-path",
    ),
    pytest.param(
        '{"people": [{"name": 1, "age": 2}, {"name": "Bo"}]}',
        [
            "JSON answer invalid at /people/0/name: 1 is not of type 'string'",
            "JSON answer invalid at /people/1: 'age' is a required property",
        ],
        id="several-sorted-by-path",
    ),
    pytest.param(
        '{"people": [',
        ["answer is not JSON: Expecting value at position 12"],
        id="truncated",
    ),
    pytest.param(
        '```json\n{"people": []}\n```',
        [],
        id="fenced",
    ),
    pytest.param("", ["answer is not JSON: Expecting value at position 0"], id="empty"),
]


@pytest.mark.parametrize(("answer", "failures"), JSON_FAILURES)
def test_json_failures(answer: str, failures: list[str]) -> None:
    assert _json_failures(answer, PEOPLE_SCHEMA) == failures


# --- the report --------------------------------------------------------------------------------


def result(title: str, passed: bool, **fields: Any) -> CheckResult:
    return CheckResult(
        title=title,
        passed=passed,
        latency_ms=fields.pop("latency_ms", 12.4),
        answer=fields.pop("answer", "Paris"),
        **fields,
    )


@pytest.mark.parametrize(
    ("results", "passed", "summary"),
    [
        pytest.param([], True, "0/0 smoke checks passed", id="empty"),
        pytest.param([result("a", True)], True, "1/1 smoke checks passed", id="one-pass"),
        pytest.param(
            [result("a", True), result("b", False, failures=["x"])],
            False,
            "1/2 smoke checks passed",
            id="one-of-two",
        ),
        pytest.param(
            [result("a", False), result("b", False)], False, "0/2 smoke checks passed", id="none"
        ),
    ],
)
def test_report_passed_and_summary(results: list[CheckResult], passed: bool, summary: str) -> None:
    report = SmokeReport(results)

    assert report.passed is passed
    assert report.summary() == summary
    assert report.failed == [r for r in results if not r.passed]


def test_report_describe_shows_each_check_and_each_failure() -> None:
    report = SmokeReport(
        [
            result("chat: capital", True, latency_ms=812.6, answer="Paris"),
            result(
                "completion: sky",
                False,
                latency_ms=None,
                answer="",
                failures=["request failed: connection refused", "answer does not contain 'blue'"],
            ),
        ]
    )

    assert report.describe().splitlines() == [
        "PASS  chat: capital  (813 ms)  answer: Paris",
        "FAIL  completion: sky  (-)  answer: ",
        "      - request failed: connection refused",
        "      - answer does not contain 'blue'",
    ]


def test_report_describe_flattens_and_shortens_long_answers() -> None:
    answer = "line one\n\n  line   two " + "x" * 200

    line = SmokeReport([result("chat: long", True, answer=answer)]).describe()

    shown = line.split("answer: ", 1)[1]
    assert "\n" not in line
    assert shown.startswith("line one line two xxx")
    assert len(shown) == 100
    assert shown.endswith("…")


# --- run_checks against a local stand-in server ------------------------------------------------


@dataclass
class FakeEngine:
    """What the stand-in server saw and how it answers."""

    port: int = 0
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    delay: float = 0.0
    chat_answer: str = ANSWER
    completion_answer: str = " Paris."
    vector: list[float] = field(default_factory=lambda: [0.5] * 8)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, _, body in self.requests]


def _handler(engine: FakeEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            engine.requests.append((self.path, dict(self.headers.items()), body))
            if engine.delay:
                time.sleep(engine.delay)
            auth = self.headers.get("Authorization")
            if auth != f"Bearer {API_KEY}":
                # Echo what was sent, as careless servers do, to show deployer masks it.
                self._send(401, {"error": {"message": f"invalid key in {auth!r}"}})
            elif self.path == "/v1/chat/completions":
                message = {"role": "assistant", "content": engine.chat_answer}
                self._send(
                    200,
                    {
                        "choices": [{"index": 0, "message": message}],
                        "usage": {"completion_tokens": 7},
                    },
                )
            elif self.path == "/v1/completions":
                self._send(
                    200,
                    {
                        "choices": [{"text": engine.completion_answer}],
                        "usage": {"completion_tokens": 2},
                    },
                )
            elif self.path == "/v1/embeddings":
                self._send(200, {"data": [{"index": 0, "embedding": engine.vector}]})
            else:
                self._send(404, {"error": "no such route"})

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    state = FakeEngine()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_chat_request_shape_and_passing_answer(engine: FakeEngine) -> None:
    checks = [
        check(
            chat="What is the capital of France?",
            system="Answer in one sentence.",
            maxTokens=16,
            expect={"contains": "paris"},
        ),
        check(chat="Say hi"),
    ]

    report = run_checks(engine.base_url, "smollm2-demo", checks, api_key=API_KEY)

    assert engine.paths() == ["/v1/chat/completions", "/v1/chat/completions"]
    assert engine.bodies() == [
        {
            "model": "smollm2-demo",
            "max_tokens": 16,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "Answer in one sentence."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
        },
        {
            "model": "smollm2-demo",
            "max_tokens": 64,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Say hi"}],
        },
    ]
    headers = engine.requests[0][1]
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert report.passed
    first = report.results[0]
    assert first.title == "chat: What is the capital of France?"
    assert first.answer == ANSWER
    assert first.completion_tokens == 7
    assert first.latency_ms is not None
    assert first.latency_ms > 0


def test_completion_request_shape(engine: FakeEngine) -> None:
    checks = [check(name="sky", completion="The capital of France is", maxTokens=4)]

    report = run_checks(engine.base_url, "m", checks, api_key=API_KEY)

    assert engine.requests[0][0] == "/v1/completions"
    assert engine.bodies() == [
        {"model": "m", "max_tokens": 4, "temperature": 0, "prompt": "The capital of France is"}
    ]
    assert report.results[0].title == "sky"
    assert report.results[0].answer == " Paris."
    assert report.results[0].completion_tokens == 2
    assert report.passed


def test_embedding_request_shape_and_dimensions(engine: FakeEngine) -> None:
    checks = [
        check(embedding="hello world", expect={"dimensions": 8}),
        check(embedding="hello again", expect={"dimensions": 384}),
    ]

    report = run_checks(engine.base_url, "embedder", checks, api_key=API_KEY)

    assert engine.paths() == ["/v1/embeddings", "/v1/embeddings"]
    assert engine.bodies() == [
        {"model": "embedder", "input": "hello world"},
        {"model": "embedder", "input": "hello again"},
    ]
    assert [r.passed for r in report.results] == [True, False]
    assert report.results[0].answer == "[8 dimensions]"
    assert report.results[1].failures == ["embedding has 8 dimensions, expected 384"]


def test_failing_expectation_is_a_failed_result(engine: FakeEngine) -> None:
    engine.chat_answer = "I think it is Lyon."

    report = run_checks(
        engine.base_url,
        "m",
        [check(chat="Capital?", expect={"contains": "Paris"})],
        api_key=API_KEY,
    )

    assert not report.passed
    assert report.results[0].answer == "I think it is Lyon."
    assert report.results[0].failures == ["answer does not contain 'Paris'"]
    assert report.summary() == "0/1 smoke checks passed"


def test_slow_answer_fails_max_latency(engine: FakeEngine) -> None:
    engine.delay = 0.3

    report = run_checks(
        engine.base_url,
        "m",
        [check(chat="Capital?", expect={"contains": "Paris"}, maxLatencyMs=50)],
        api_key=API_KEY,
    )

    only = report.results[0]
    assert not only.passed
    assert only.latency_ms is not None
    assert only.latency_ms >= 300
    assert len(only.failures) == 1
    assert only.failures[0].endswith("more than maxLatencyMs 50")
    assert only.answer == ANSWER


def test_fast_answer_meets_max_latency(engine: FakeEngine) -> None:
    report = run_checks(
        engine.base_url, "m", [check(chat="Capital?", maxLatencyMs=30000)], api_key=API_KEY
    )

    assert report.passed


@pytest.mark.parametrize(
    "key",
    [pytest.param("sk-wrong-key-9999", id="wrong-key"), pytest.param(None, id="no-key")],
)
def test_http_401_is_a_failed_result_with_the_status(engine: FakeEngine, key: str | None) -> None:
    if key:
        secrets.register(key)

    report = run_checks(engine.base_url, "m", [check(chat="Capital?")], api_key=key)

    only = report.results[0]
    assert not only.passed
    assert len(only.failures) == 1
    assert only.failures[0].startswith("HTTP 401: ")
    assert only.answer == ""
    if key:
        assert engine.requests[0][1]["Authorization"] == f"Bearer {key}"
        assert key not in report.describe()
        assert secrets.MASK in only.failures[0]
    else:
        assert "Authorization" not in engine.requests[0][1]


def test_unreachable_endpoint_is_a_failed_result(closed_port: int) -> None:
    checks = [check(chat="Capital?"), check(embedding="x")]

    report = run_checks(f"http://127.0.0.1:{closed_port}/v1", "m", checks, api_key=API_KEY)

    assert [r.passed for r in report.results] == [False, False]
    for only in report.results:
        assert only.latency_ms is None
        assert len(only.failures) == 1
        assert only.failures[0].startswith("request failed: ")
    assert report.summary() == "0/2 smoke checks passed"


def test_each_result_is_reported_as_an_event(engine: FakeEngine) -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    checks = [
        check(chat="Capital?", expect={"contains": "Paris"}),
        check(chat="Other?", expect={"contains": "Rome"}),
    ]

    run_checks(engine.base_url, "m", checks, api_key=API_KEY, events=bus)

    assert [(e.kind, e.step) for e in seen] == [(EventKind.LOG, "smoke"), (EventKind.LOG, "smoke")]
    assert seen[0].message == f"pass: chat: Capital? -> {ANSWER}"
    assert seen[1].message.startswith("FAIL: chat: Other? -> ")
