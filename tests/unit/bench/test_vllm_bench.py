"""``vllm bench serve`` for the same load, and its detailed result (captured from a real run
against the demo engine) as a load point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deployer.bench.guidellm_load import LoadTarget
from deployer.bench.measure import PointSamples, RequestSample, load_point
from deployer.bench.results import LoadPoint
from deployer.bench.vllm_bench import argv, parse_result
from deployer.errors import BenchError
from deployer.manifest.performance import BenchmarkSpec, SloSpec

HERE = Path(__file__).parent
TARGET = LoadTarget("http://127.0.0.1:8000", "smollm2-demo", Path("/models/smollm2"))
SLO = SloSpec.model_validate({"ttftMs": {"p50": 1500, "p99": 4000}, "itlMs": {"p99": 400}})


def _point(kind: str = "concurrent", value: float = 2, requests: int = 4) -> LoadPoint:
    samples = tuple(RequestSample("completed", 94, 16, 100, 10, 300) for _ in range(requests))
    return load_point(PointSamples(kind, value, 2.0, samples), None)  # type: ignore[arg-type]


def _flags(flags: list[str]) -> dict[str, Any]:
    """Flag -> its value (True for a bare flag; a list for --goodput)."""
    found: dict[str, Any] = {}
    key = None
    for item in flags:
        if item.startswith("--"):
            key = item
            found[key] = True
        elif key == "--goodput" and found[key] is not True:
            found[key].append(item)
        else:
            found[key] = [item] if key == "--goodput" else item  # type: ignore[index]
    return found


def test_the_same_load_as_the_guidellm_point() -> None:
    spec = BenchmarkSpec.model_validate(
        {"workload": {"promptTokens": 64, "outputTokens": 16, "seed": 9}, "warmupSeconds": 1}
    )
    flags = _flags(argv(_point(), spec, SLO, TARGET, result=Path("/w/p.json"), base_dir=Path()))
    assert flags["--backend"] == "openai-chat"
    assert flags["--base-url"] == "http://127.0.0.1:8000"
    assert flags["--endpoint"] == "/v1/chat/completions"
    assert flags["--model"] == "smollm2-demo"
    assert flags["--tokenizer"] == "/models/smollm2"
    assert flags["--max-concurrency"] == "2"
    assert flags["--num-prompts"] == "4"
    assert flags["--num-warmups"] == "2"
    assert flags["--seed"] == "9"
    assert (flags["--random-input-len"], flags["--random-output-len"]) == ("64", "16")
    assert flags["--random-range-ratio"] == "0"
    assert flags["--ignore-eos"] is True
    assert (flags["--result-dir"], flags["--result-filename"]) == ("/w", "p.json")
    assert flags["--goodput"] == ["ttft:4000", "tpot:400"]
    assert "--request-rate" not in flags


def test_a_rate_point_and_a_distribution() -> None:
    spec = BenchmarkSpec.model_validate(
        {"workload": {"promptTokens": {"mean": 200, "stdev": 50}}, "warmupSeconds": 0}
    )
    flags = _flags(
        argv(_point("rate", 0.5, 3), spec, None, TARGET, result=Path("/w/p.json"), base_dir=Path())
    )
    assert flags["--request-rate"] == "0.5"
    assert flags["--num-warmups"] == "0"
    assert flags["--random-range-ratio"] == "0.25"
    assert "--max-concurrency" not in flags
    assert "--goodput" not in flags


def test_at_least_one_round_of_the_concurrency() -> None:
    spec = BenchmarkSpec()
    flags = _flags(argv(_point(value=8, requests=3), spec, None, TARGET, result=Path("/p.json"),
                        base_dir=Path()))  # fmt: skip
    assert flags["--num-prompts"] == "8"


def test_the_detailed_result_as_a_point() -> None:
    raw = json.loads((HERE / "vllm-bench-concurrent-2.json").read_text())
    point = load_point(parse_result(raw, _point()), SLO)
    assert point.requests == raw["completed"] == 4
    assert point.input_tokens == raw["total_input_tokens"]
    assert point.output_tokens == raw["total_output_tokens"]
    assert point.requests_per_second == pytest.approx(raw["request_throughput"])
    assert point.output_tokens_per_second == pytest.approx(raw["output_throughput"])
    # Per-request TPOT is vLLM's ITL; its percentiles are computed the same way (numpy).
    assert point.itl_ms.mean == pytest.approx(raw["mean_tpot_ms"])
    assert point.itl_ms.p99 == pytest.approx(raw["p99_tpot_ms"])
    assert point.ttft_ms.p50 == pytest.approx(raw["p50_ttft_ms"])
    assert point.ttft_ms.p90 == pytest.approx(raw["p90_ttft_ms"])
    assert point.e2e_ms.p99 == pytest.approx(raw["p99_e2el_ms"])
    assert point.goodput == pytest.approx(raw["request_goodput"])
    assert point.meets_slo is True


def test_a_failed_request_is_errored_and_a_cut_result_an_error() -> None:
    raw = json.loads((HERE / "vllm-bench-concurrent-2.json").read_text())
    raw["errors"][0] = "Connection refused"
    samples = parse_result(raw, _point())
    assert [s.status for s in samples.samples].count("errored") == 1
    del raw["latencies"]
    with pytest.raises(BenchError, match="cannot read vllm bench serve's result"):
        parse_result(raw, _point())
