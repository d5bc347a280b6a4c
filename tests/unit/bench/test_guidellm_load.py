"""GuideLLM's scenario from the manifest, and its report (captured from a real run against the
demo engine, trimmed to the fields read) into load points."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from deployer.bench.guidellm_load import LoadTarget, parse_benchmark, read_point, scenario
from deployer.bench.measure import load_point
from deployer.errors import BenchError, ManifestError
from deployer.manifest.performance import BenchmarkSpec, SloSpec

HERE = Path(__file__).parent
TARGET = LoadTarget("http://127.0.0.1:8000", "smollm2-demo", Path("/models/smollm2"))
#: The SLO the fixtures were measured with.
SLO = SloSpec.model_validate({"ttftMs": {"p50": 1500, "p99": 4000}, "itlMs": {"p99": 400}})


def _scenario(benchmark: dict[str, Any], slo: SloSpec | None = None, **kw: Any) -> dict[str, Any]:
    spec = BenchmarkSpec.model_validate(benchmark)
    return scenario(spec, slo, TARGET, report=Path("/r/report.json"), base_dir=Path("/m"), **kw)


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((HERE / name).read_text())  # type: ignore[no-any-return]


def test_fixed_concurrencies_are_one_sub_benchmark_each() -> None:
    doc = _scenario(
        {
            "workload": {"promptTokens": 64, "outputTokens": 16, "seed": 7},
            "load": {"kind": "concurrent", "concurrencies": [1, 2, 4]},
            "durationSeconds": 8,
            "warmupSeconds": 2,
            "maxRequests": 50,
        }
    )
    spec = doc["spec"]
    assert doc["benchmarks"] == [
        {"profile.streams": 1},
        {"profile.streams": 2},
        {"profile.streams": 4},
    ]
    assert spec["profile"] == {
        "kind": "concurrent",
        "streams": [1],
        "warmup": {"mode": "duration", "value": 2},
    }
    assert spec["constraints"] == [
        {"kind": "max_duration", "seconds": 8},
        {"kind": "max_requests", "count": 50},
    ]
    assert spec["data"] == [{"kind": "synthetic_text", "prompt_tokens": 64, "output_tokens": 16}]
    assert spec["seed"] == {"kind": "static", "value": 7}
    assert spec["backend"] == {
        "kind": "openai_http",
        "target": "http://127.0.0.1:8000",
        "model": "smollm2-demo",
        "request_format": "/v1/chat/completions",
    }
    assert spec["tokenizer"] == {"kind": "huggingface_auto", "model": "/models/smollm2"}
    assert spec["outputs"] == [{"kind": "json", "path": "/r/report.json"}]
    assert spec["metrics"] == {"kind": "generative", "sample_size": None}


def test_rates_are_poisson_arrivals() -> None:
    doc = _scenario({"load": {"kind": "rate", "rates": [0.5, 2]}, "warmupSeconds": 0})
    assert doc["spec"]["profile"] == {"kind": "poisson", "rate": [0.5]}
    assert doc["benchmarks"] == [{"profile.rate": 0.5}, {"profile.rate": 2}]


def test_a_search_is_guidellms_goodput_profile_with_per_request_thresholds() -> None:
    slo = SloSpec.model_validate(
        {"ttftMs": {"p50": 200, "p90": 500}, "itlMs": {"p99": 30}, "e2eMs": {"p50": 3000}}
    )
    doc = _scenario({"load": {"kind": "search", "maxConcurrency": 16}}, slo)
    assert doc["benchmarks"] == [None]
    profile = doc["spec"]["profile"]
    assert profile["kind"] == "goodput"
    # p99 is the highest percentile named: 99% of the requests must conform.
    assert profile["target_attainment"] == 0.99
    assert (profile["initial_streams"], profile["max_streams"]) == (1, 16)
    # Each metric's threshold is its target at its highest percentile given; ITL is tpot_ms.
    assert doc["spec"]["metrics"]["slo"] == {"ttft_ms": 500, "tpot_ms": 30, "e2el_ms": 3000}


def test_a_preset_slo_gives_its_thresholds() -> None:
    doc = _scenario({}, SloSpec.model_validate({"preset": "chat-8b"}))
    assert doc["spec"]["metrics"]["slo"] == {"ttft_ms": 500, "tpot_ms": 30}


def test_token_distributions() -> None:
    doc = _scenario(
        {
            "workload": {
                "promptTokens": {"mean": 200, "stdev": 50, "min": 100, "max": 300},
                "outputTokens": {"mean": 64},
            }
        }
    )
    assert doc["spec"]["data"] == [
        {
            "kind": "synthetic_text",
            "prompt_tokens": 200,
            "prompt_tokens_stdev": 50,
            "prompt_tokens_min": 100,
            "prompt_tokens_max": 300,
            "output_tokens": 64,
        }
    ]


def test_a_pinned_dataset_is_checked_before_use(tmp_path: Path) -> None:
    rows = tmp_path / "prompts.jsonl"
    rows.write_text('{"prompt": "Hello", "output_tokens": 8}\n')
    digest = hashlib.sha256(rows.read_bytes()).hexdigest()
    spec = BenchmarkSpec.model_validate(
        {"workload": {"dataset": {"file": "prompts.jsonl", "sha256": digest}}}
    )
    doc = scenario(spec, None, TARGET, report=tmp_path / "r.json", base_dir=tmp_path)
    assert doc["spec"]["data"] == [{"kind": "json_file", "path": str(rows)}]
    mapper = doc["spec"]["data_column_mapper"]["column_mappings"]
    assert mapper == {"text_column": "prompt", "output_tokens_count_column": "output_tokens"}
    rows.write_text('{"prompt": "Changed"}\n')
    with pytest.raises(ManifestError, match="not the pinned"):
        scenario(spec, None, TARGET, report=tmp_path / "r.json", base_dir=tmp_path)


def test_the_key_is_never_in_the_scenario() -> None:
    doc = _scenario({})
    assert "api_key" not in json.dumps(doc)


def test_a_point_counts_what_ended_in_the_measured_window() -> None:
    """Concurrency 1 with a 1 s warm-up: GuideLLM sent 4 requests, the first ended in the
    warm-up; the point is the other 3, the engine saw all 4."""
    raw = _fixture("guidellm-point-concurrent-1.json")
    samples = parse_benchmark(raw, "concurrent")
    assert (samples.kind, samples.value) == ("concurrent", 1.0)
    assert len(samples.samples) == 4
    assert [s.measured for s in samples.samples] == [False, True, True, True]
    point = load_point(samples, SLO)
    assert point.requests == raw["metrics"]["request_totals"]["successful"] == 3
    assert (point.errored, point.incomplete) == (0, 0)
    assert (point.input_tokens, point.output_tokens) == (3 * 94, 3 * 16)
    assert (point.sent_requests, point.sent_completed) == (4, 4)
    assert (point.sent_input_tokens, point.sent_output_tokens) == (4 * 94, 4 * 16)
    assert point.duration_seconds == pytest.approx(raw["duration"])
    assert point.requests_per_second == pytest.approx(3 / raw["duration"])
    assert point.output_tokens_per_second == pytest.approx(48 / raw["duration"])
    measured = [r for r in raw["requests"]["successful"][1:]]
    ttfts = sorted(r["time_to_first_token_ms"] for r in measured)
    assert point.ttft_ms.p50 == pytest.approx(ttfts[1])
    assert point.ttft_ms.mean == pytest.approx(sum(ttfts) / 3)
    e2es = sorted(r["request_latency"] * 1000 for r in measured)
    assert point.e2e_ms.p99 == pytest.approx(e2es[1] + (e2es[2] - e2es[1]) * 0.98)
    assert point.itl_ms.p50 == pytest.approx(
        sorted(r["inter_token_latency_ms"] for r in measured)[1]
    )
    # Every request was well within TTFT 4 s and ITL 400 ms, as GuideLLM found too.
    assert point.attainment == raw["metrics"]["slo_attainment"] == 1.0
    assert point.goodput == pytest.approx(point.requests_per_second)
    assert point.meets_slo is True
    assert point.missed == ()


def test_a_tighter_slo_is_missed_per_request_and_per_percentile() -> None:
    raw = _fixture("guidellm-point-concurrent-2.json")
    slo = SloSpec.model_validate({"ttftMs": {"p50": 300, "p99": 400}})
    point = load_point(parse_benchmark(raw, "concurrent"), slo)
    ttfts = [
        r["time_to_first_token_ms"]
        for r in raw["requests"]["successful"]
        if r["request_end_time"] > raw["scheduler_metrics"]["measure_start_time"]
    ]
    conforming = sum(1 for t in ttfts if t <= 400)
    assert point.requests == len(ttfts)
    assert point.attainment == pytest.approx(conforming / len(ttfts))
    assert point.goodput == pytest.approx(conforming / raw["duration"])
    assert point.meets_slo is (max(ttfts) <= 400 and sorted(ttfts)[len(ttfts) // 2] <= 300)
    assert any(m.startswith("TTFT p99") for m in point.missed) is (
        point.ttft_ms.p99 is not None and point.ttft_ms.p99 > 400
    )


def test_a_search_probe_is_a_search_point(tmp_path: Path) -> None:
    path = tmp_path / "point-001.json"
    path.write_text(json.dumps(_fixture("guidellm-point-concurrent-2.json")))
    point = read_point(path, "search", SLO)
    assert (point.kind, point.value, point.label) == ("search", 2.0, "concurrency 2")


def test_an_unreadable_report_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="cannot read GuideLLM's report"):
        parse_benchmark({"config": {}}, "concurrent")
    path = tmp_path / "point-001.json"
    path.write_text("{cut")
    with pytest.raises(BenchError, match="cannot read GuideLLM's point"):
        read_point(path, "concurrent", None)


def test_a_request_still_running_when_guidellm_closed_the_point_was_sent() -> None:
    """GuideLLM (``maxRequests`` 6, concurrency 1) once compiled a point with its 6th request
    still running: ``scheduler_state`` said processed 5, processing 1, and the report listed 5;
    the request completed on the engine, which counted 6. The captured point with its
    ``scheduler_state`` counters set to what that run reported."""
    raw = _fixture("guidellm-point-concurrent-1.json")
    listed = len(raw["requests"]["successful"])
    raw["scheduler_state"] = {
        "successful_requests": listed,
        "errored_requests": 0,
        "processing_requests": 1,
        "cancelled_requests": 0,
    }
    point = load_point(parse_benchmark(raw, "concurrent"), SLO)
    assert point.sent_requests == listed + 1
    assert point.sent_completed == listed
    # Without the counters, what the report lists is all that was sent.
    del raw["scheduler_state"]
    assert load_point(parse_benchmark(raw, "concurrent"), SLO).sent_requests == listed


def test_requests_cancelled_before_they_started_were_not_sent() -> None:
    """A point cut by its duration: GuideLLM counted 12 successful and 4 cancelled, of which one
    had started (listed as incomplete) and three were still queued (as a real run reported)."""
    raw = _fixture("guidellm-point-concurrent-1.json")
    listed = len(raw["requests"]["successful"])
    raw["requests"]["incomplete"] = [dict(raw["requests"]["successful"][-1], output_tokens=3)]
    raw["scheduler_state"] = {
        "successful_requests": listed,
        "errored_requests": 0,
        "processing_requests": 0,
        "cancelled_requests": 4,
    }
    point = load_point(parse_benchmark(raw, "concurrent"), SLO)
    assert point.sent_requests == listed + 1
    assert point.incomplete == 1
