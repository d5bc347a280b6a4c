"""Run a manifest's smoke checks against an OpenAI-compatible endpoint.

Each check sends one request (chat, completion or embedding) with greedy decoding, measures its
latency, and compares the answer with the check's expectations. A failed expectation is a result,
not an exception: the caller decides what a failing report means.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deployer import secrets
from deployer.events import EventBus, EventKind
from deployer.manifest.models import Expectation, SmokeCheck

if TYPE_CHECKING:
    import httpx

REQUEST_TIMEOUT = 300.0


@dataclass(frozen=True)
class CheckResult:
    title: str
    passed: bool
    latency_ms: float | None
    answer: str
    failures: list[str] = field(default_factory=list)
    completion_tokens: int | None = None
    #: Whether the engine answered at all (False: the request failed, or its response was an
    #: error or not an answer; ``answer`` is then empty).
    answered: bool = True


@dataclass(frozen=True)
class SmokeReport:
    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def summary(self) -> str:
        return f"{len(self.results) - len(self.failed)}/{len(self.results)} smoke checks passed"

    def describe(self) -> str:
        """One line per check, then the reasons of each failure, for terminals and errors."""
        lines = []
        for result in self.results:
            mark = "PASS" if result.passed else "FAIL"
            latency = f"{result.latency_ms:.0f} ms" if result.latency_ms is not None else "-"
            lines.append(f"{mark}  {result.title}  ({latency})  answer: {_shown(result)}")
            lines.extend(f"      - {reason}" for reason in result.failures)
        return "\n".join(lines)


def run_checks(
    base_url: str,
    model: str,
    checks: list[SmokeCheck],
    *,
    api_key: str | None,
    events: EventBus | None = None,
) -> SmokeReport:
    """Run ``checks`` against ``base_url`` (ending in ``/v1``) in order; never raises for a
    failing check or an unreachable endpoint (those are failed results)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    results = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT) as client:
        for check in checks:
            result = _run_one(client, model, check)
            results.append(result)
            if events is not None:
                events.emit(
                    EventKind.LOG,
                    f"{'pass' if result.passed else 'FAIL'}: {result.title} -> {_shown(result)}",
                    step="smoke",
                    check=result.title,
                    endpoint=base_url,
                    passed=result.passed,
                    latency_ms=round(result.latency_ms, 1) if result.latency_ms else None,
                    answer=result.answer[:ANSWER_KEPT],
                    failure="; ".join(result.failures)[:ANSWER_KEPT] or None,
                )
    return SmokeReport(results)


#: The longest answer an event keeps (a deployment's smoke history shows it).
ANSWER_KEPT = 2000


def _run_one(client: httpx.Client, model: str, check: SmokeCheck) -> CheckResult:
    import httpx

    path, body = _request(model, check)
    started = time.perf_counter()
    try:
        response = client.post(path, json=body)
    except httpx.HTTPError as exc:
        return CheckResult(check.title, False, None, "", [f"request failed: {exc}"], answered=False)
    latency_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        text = secrets.mask(response.text[:300])
        return CheckResult(
            check.title,
            False,
            latency_ms,
            "",
            [f"HTTP {response.status_code}: {text}"],
            answered=False,
        )
    try:
        payload = response.json()
        answer, vector, tokens = _extract(check, payload)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return CheckResult(
            check.title,
            False,
            latency_ms,
            "",
            [f"unexpected response shape: {exc}"],
            answered=False,
        )
    failures = _evaluate(check.expect, answer, vector)
    if check.max_latency_ms is not None and latency_ms > check.max_latency_ms:
        failures.append(f"took {latency_ms:.0f} ms, more than maxLatencyMs {check.max_latency_ms}")
    return CheckResult(check.title, not failures, latency_ms, answer, failures, tokens)


def _request(model: str, check: SmokeCheck) -> tuple[str, dict[str, object]]:
    if check.kind == "embedding":
        return "/embeddings", {"model": model, "input": check.prompt}
    common: dict[str, object] = {"model": model, "max_tokens": check.max_tokens, "temperature": 0}
    if check.kind == "completion":
        return "/completions", {**common, "prompt": check.prompt}
    messages = [{"role": "system", "content": check.system}] if check.system else []
    messages.append({"role": "user", "content": check.prompt})
    return "/chat/completions", {**common, "messages": messages}


def _extract(
    check: SmokeCheck, payload: dict[str, object]
) -> tuple[str, list[float] | None, int | None]:
    if check.kind == "embedding":
        data = payload["data"]
        if not isinstance(data, list):
            raise TypeError("'data' is not a list")
        vector = [float(x) for x in data[0]["embedding"]]
        return f"[{len(vector)} dimensions]", vector, None
    choices = payload["choices"]
    if not isinstance(choices, list):
        raise TypeError("'choices' is not a list")
    choice = choices[0]
    text = choice["message"]["content"] if check.kind == "chat" else choice["text"]
    usage = payload.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return str(text or ""), None, tokens


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def _evaluate(expect: Expectation, answer: str, vector: list[float] | None) -> list[str]:
    failures = []
    lowered = answer.lower()
    for text in _as_list(expect.contains):
        if text.lower() not in lowered:
            failures.append(f"answer does not contain {text!r}")
    for text in _as_list(expect.not_contains):
        if text.lower() in lowered:
            failures.append(f"answer contains {text!r}")
    if expect.regex is not None and not re.search(expect.regex, answer):
        failures.append(f"answer does not match /{expect.regex}/")
    if expect.json_schema is not None:
        failures.extend(_json_failures(answer, expect.json_schema))
    if expect.dimensions is not None:
        size = len(vector) if vector is not None else 0
        if size != expect.dimensions:
            failures.append(f"embedding has {size} dimensions, expected {expect.dimensions}")
    return failures


def _json_failures(answer: str, schema: dict[str, object]) -> list[str]:
    text = answer.strip()
    # Models often wrap JSON in a Markdown fence, sometimes after a sentence: take the fence.
    fenced = re.search(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    import jsonschema

    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"answer is not JSON: {exc.msg} at position {exc.pos}"]
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(document), key=lambda e: e.path
    )
    return [f"JSON answer invalid at /{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def _shown(result: CheckResult, limit: int = 100) -> str:
    """The answer on one line, cut at ``limit``. An answer with nothing to read is shown quoted
    and named, so a line never ends at the arrow; no answer at all (a failed request, whose
    reason follows) shows nothing."""
    flat = " ".join(result.answer.split())
    if not flat and result.answered and result.latency_ms is not None:
        what = "whitespace only" if result.answer else "empty answer"
        return f"{json.dumps(result.answer)} ({what})"
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
