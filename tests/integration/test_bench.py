"""``deployer bench`` for real: GuideLLM against the demo engine (vLLM's CPU build serving
SmolLM2-135M), its figures checked against the engine's own ``/metrics``.

One engine for the module; each test applies the demo with its own ``spec.benchmark`` (the
engine stays: only the manifest digest changes) and benchmarks it. What the engine counted
between two scrapes is what GuideLLM sent, warm-up requests included: the result's ``sent_*``
figures must equal the counters exactly, and its latency quantiles must fall where the engine's
histograms put them, within a bucket. Loads stay small (2 cores shared with other work).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import demo_unmeasured
from tests.integration.cli import deployer
from tests.integration.serverdemo import free_port

pytestmark = pytest.mark.engine
NAME = "smollm2-demo"
#: A short workload: 64-token prompts (94 with the chat template), 16 tokens out.
WORKLOAD = {"promptTokens": 64, "outputTokens": 16, "seed": 42}
#: Loose enough for this shared 2-core machine: what is checked is the counting.
SLO = {"ttftMs": {"p50": 3000, "p99": 8000}, "itlMs": {"p99": 800}}
#: Each metric and the engine histogram of the same thing per request (seconds).
HISTOGRAMS = {
    "ttft_ms": "vllm:time_to_first_token_seconds",
    "itl_ms": "vllm:request_time_per_output_token_seconds",
    "e2e_ms": "vllm:e2e_request_latency_seconds",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("bench-home")
    yield path
    deployer("destroy", NAME, home=path)


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-manifests")


#: A port of the module's own: other work on this machine may serve the demo on its default.
PORT = free_port()


def apply_with(home: Path, folder: Path, label: str, benchmark: dict[str, Any]) -> str:
    """Apply the demo with this ``spec.benchmark`` and :data:`SLO`; its endpoint."""
    extra = {"slo": SLO, "benchmark": benchmark}
    text = demo_unmeasured().rstrip("\n") + "\n"
    text = text.replace("maxModelLen: 2048", f"maxModelLen: 2048\n    port: {PORT}")
    for key, value in extra.items():
        text += f"  {key}: {json.dumps(value)}\n"
    path = folder / f"{label}.yaml"
    path.write_text(text)
    result = deployer("apply", str(path), home=home)
    assert result.code == 0, result.output
    status = deployer("status", NAME, "-o", "json", home=home)
    [entry] = json.loads(status.stdout)
    return str(entry["endpoint"]).removesuffix("/v1")


def scrape(url: str) -> dict[str, Any]:
    """The engine's counters (summed over labels) and histograms' cumulative buckets."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    counters: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                counters[sample.name] = counters.get(sample.name, 0.0) + sample.value
            elif sample.name.endswith("_bucket"):
                bounds = buckets.setdefault(sample.name.removesuffix("_bucket"), {})
                le = float(sample.labels["le"])
                bounds[le] = bounds.get(le, 0.0) + sample.value
    return {"counters": counters, "buckets": buckets}


def delta(before: dict[str, Any], after: dict[str, Any], counter: str) -> float:
    return after["counters"][counter] - before["counters"].get(counter, 0.0)  # type: ignore[no-any-return]


def bucket_bounds(
    before: dict[str, Any], after: dict[str, Any], name: str, q: float
) -> tuple[float, float]:
    """The engine's ``q`` quantile as the histogram resolves it: from the lower edge of the
    bucket below the one holding it to the upper edge of the bucket above (seconds)."""
    edges = sorted(after["buckets"][name])
    counts = [after["buckets"][name][e] - before["buckets"][name].get(e, 0.0) for e in edges]
    total = counts[-1]
    assert total > 0
    index = next(i for i, count in enumerate(counts) if count >= q * total)
    low = edges[index - 2] if index >= 2 else 0.0
    high = edges[min(index + 1, len(edges) - 1)]
    return low, high


def bench(home: Path, *args: str, timeout: float = 600) -> dict[str, Any]:
    result = deployer("bench", NAME, *args, "-o", "json", home=home, timeout=timeout)
    assert result.code == 0, result.output
    assert "Traceback" not in result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def assert_agrees_with_engine(
    result: dict[str, Any], before: dict[str, Any], after: dict[str, Any]
) -> None:
    points = result["points"]
    assert points
    sent = sum(p["sent_requests"] for p in points)
    listed = sum(p["sent_completed"] for p in points)
    # Every request GuideLLM started completed (maxRequests ends each point, not the clock);
    # GuideLLM may close a point while its last request still runs, which its report then does
    # not list: the engine counts it all the same.
    assert sent - len(points) <= listed <= sent
    assert delta(before, after, "vllm:request_success_total") == sent
    # Each request of this workload has the same prompt (64 tokens and the chat template) and
    # output (16, ignore_eos): an unlisted one had them too.
    prompt = {p["sent_input_tokens"] / p["sent_completed"] for p in points}
    assert len(prompt) == 1
    assert all(p["sent_output_tokens"] == 16 * p["sent_completed"] for p in points)
    unlisted = sent - listed
    assert (
        delta(before, after, "vllm:prompt_tokens_total")
        == sum(p["sent_input_tokens"] for p in points) + unlisted * prompt.pop()
    )
    assert (
        delta(before, after, "vllm:generation_tokens_total")
        == sum(p["sent_output_tokens"] for p in points) + unlisted * WORKLOAD["outputTokens"]
    )
    for point in points:
        assert 0 < point["requests"] <= point["sent_completed"]
        assert point["output_tokens"] == point["requests"] * WORKLOAD["outputTokens"]
        assert point["requests_per_second"] == pytest.approx(
            point["requests"] / point["duration_seconds"]
        )
    # The engine's histograms hold every point's requests: a quantile of the whole lies between
    # the points' own quantiles, which must fall in the engine's bucket (one bucket either side:
    # the client's clock adds the network, and small samples interpolate).
    for metric, histogram in HISTOGRAMS.items():
        for percentile, q in (("p50", 0.5), ("p90", 0.9)):
            values = [p[metric][percentile] / 1000 for p in points if p[metric][percentile]]
            low, high = bucket_bounds(before, after, histogram, q)
            assert min(values) <= high, (metric, percentile, values, low, high)
            assert max(values) >= low, (metric, percentile, values, low, high)


def test_fixed_concurrency_agrees_with_the_engines_counters(home: Path, manifests: Path) -> None:
    url = apply_with(
        home,
        manifests,
        "fixed",
        {
            "workload": WORKLOAD,
            "load": {"kind": "concurrent", "concurrencies": [1, 2]},
            "durationSeconds": 60,
            "warmupSeconds": 1,
            "maxRequests": 6,
        },
    )
    before = scrape(url)
    started = time.monotonic()
    result = bench(home)
    took = time.monotonic() - started
    after = scrape(url)
    assert result["status"] == "complete"
    assert result["tool"] == "guidellm 0.8.1"
    assert [(p["kind"], p["value"]) for p in result["points"]] == [
        ("concurrent", 1.0),
        ("concurrent", 2.0),
    ]
    assert_agrees_with_engine(result, before, after)
    # Warm-up requests hit the engine but are not in the points.
    assert sum(p["sent_requests"] - p["requests"] for p in result["points"]) >= 1
    for point in result["points"]:
        assert point["meets_slo"] is True, point["missed"]
        assert point["attainment"] == 1.0
        assert point["goodput"] == pytest.approx(point["requests_per_second"])
    print(f"bench of 2 points in {took:.0f}s: {json.dumps(result['points'])}")

    # Stored with the revision it measured, and shown again by id.
    listed = deployer("bench", NAME, "--list", "-o", "json", home=home)
    assert [b["id"] for b in json.loads(listed.stdout)][:1] == [result["id"]]
    shown = deployer("bench", NAME, "--show", str(result["id"]), home=home)
    assert shown.code == 0, shown.output
    assert "best load meeting the SLO: concurrency" in shown.stdout
    assert "concurrency 2" in shown.stdout
    key = deployer("key", NAME, home=home).stdout.strip()
    database = (home / "state.db").read_bytes() if (home / "state.db").exists() else b""
    assert key.encode() not in database
    guidellm_logs = list(home.glob("deployments/*/bench/*/guidellm.log"))
    assert guidellm_logs
    for log in guidellm_logs:
        assert key not in log.read_text()
    for scenario in home.glob("deployments/*/bench/*/scenario.json"):
        assert key not in scenario.read_text()


def test_slo_search_agrees_with_the_engines_counters(home: Path, manifests: Path) -> None:
    url = apply_with(
        home,
        manifests,
        "search",
        {
            "workload": WORKLOAD,
            "load": {"kind": "search", "maxConcurrency": 2},
            "durationSeconds": 60,
            "warmupSeconds": 1,
            "maxRequests": 6,
        },
    )
    before = scrape(url)
    result = bench(home, "--cross-check")
    after_search = result  # the cross-check's load is counted too, below
    after = scrape(url)
    points = after_search["points"]
    assert result["status"] == "complete"
    assert {p["kind"] for p in points} == {"search"}
    assert points[0]["value"] == 1.0
    # The loose SLO holds at every concurrency probed, up to the search's ceiling.
    assert max(p["value"] for p in points) == 2.0
    assert all(p["meets_slo"] for p in points)
    # vllm bench serve ran the same load per point; the engine counted both tools' requests
    # (and vllm bench serve's warm-ups, one round of the concurrency each).
    cross = result["cross_check"]
    assert [(p["value"], p["requests"]) for p in cross] == [
        (p["value"], max(p["requests"], int(p["value"]))) for p in points
    ]
    warmups = sum(int(p["value"]) for p in points)
    guidellm_sent = sum(p["sent_requests"] for p in points)
    unlisted = guidellm_sent - sum(p["sent_completed"] for p in points)
    assert delta(before, after, "vllm:request_success_total") == (
        guidellm_sent + sum(p["requests"] for p in cross) + warmups
    )
    assert delta(before, after, "vllm:generation_tokens_total") == (
        sum(p["sent_output_tokens"] for p in points)
        + 16 * (unlisted + sum(p["requests"] for p in cross) + warmups)
    )
    for ours, theirs in zip(points, cross, strict=True):
        assert theirs["output_tokens"] == theirs["requests"] * 16
        assert theirs["meets_slo"] is True
        assert theirs["e2e_ms"]["p50"] > theirs["ttft_ms"]["p50"] > 0
        print(
            f"{ours['label'] if 'label' in ours else ours['value']}: e2e p50 guidellm "
            f"{ours['e2e_ms']['p50']:.0f} ms, vllm bench serve {theirs['e2e_ms']['p50']:.0f} ms"
        )
    shown = deployer("bench", NAME, "--show", str(result["id"]), home=home)
    assert "cross-check" in shown.stdout


LONG = {
    "workload": WORKLOAD,
    "load": {"kind": "concurrent", "concurrencies": [1, 2]},
    "durationSeconds": 10,
    "warmupSeconds": 1,
}


def start_bench(home: Path) -> tuple[subprocess.Popen[str], float]:
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployer", "bench", NAME],
        env={**os.environ, "DEPLOYER_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, started


def wait_first_point(home: Path, proc: subprocess.Popen[str], started: float) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        points = home.glob("deployments/*/bench/*/points/point-001.json")
        if any(p.stat().st_mtime > started for p in points):
            return
        time.sleep(0.5)
    pytest.fail(f"the first load point never finished: {proc.poll()}")


def no_guidellm_left() -> list[list[str]]:
    return [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if any("guidellm_worker" in part for part in (p.info["cmdline"] or []))
    ]


def latest(home: Path) -> dict[str, Any]:
    listed = json.loads(deployer("bench", NAME, "--list", "-o", "json", home=home).stdout)
    return listed[0]  # type: ignore[no-any-return]


def test_ctrl_c_keeps_finished_points_and_leaves_no_process(home: Path, manifests: Path) -> None:
    apply_with(home, manifests, "long", LONG)
    proc, started = start_bench(home)
    wait_first_point(home, proc, started)
    time.sleep(3)  # into the second point
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert "the finished load points are kept as a partial result" in output
    assert no_guidellm_left() == []
    result = latest(home)
    assert result["status"] == "partial"
    assert result["reason"] == "interrupted (Ctrl-C)"
    assert [p["value"] for p in result["points"]] == [1.0]
    shown = deployer("bench", NAME, "--show", str(result["id"]), home=home)
    assert "partial result: interrupted (Ctrl-C)" in shown.stdout
    [entry] = json.loads(deployer("status", NAME, "-o", "json", home=home).stdout)
    assert entry["last_run"]["operation"] == "bench"
    assert entry["last_run"]["status"] == "interrupted"


def test_an_engine_dying_mid_run_is_one_line_and_a_partial_result(home: Path) -> None:
    proc, started = start_bench(home)
    wait_first_point(home, proc, started)
    [entry] = json.loads(deployer("status", NAME, "-o", "json", home=home).stdout)
    os.killpg(int(entry["pid"]), signal.SIGKILL)  # the supervisor starts it again, slowly
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert "stopped answering" in errors[0]
    assert no_guidellm_left() == []
    result = latest(home)
    assert result["status"] == "partial"
    assert result["points"][0]["value"] == 1.0

    # While it restarts, a bench is refused at once, in one line.
    again = deployer("bench", NAME, home=home, timeout=60)
    assert again.code == 1, again.output
    assert again.stderr.startswith("error: smollm2-demo is not healthy"), again.output
    assert "Traceback" not in again.output
    assert latest(home)["status"] == "partial"
    assert latest(home)["points"] == []
