"""The llm-d BenchmarkReport v0.2 export: valid against llm-d's own schema, the right units,
deployer's facts where a reader finds them, a partial run marked partial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from deployer.bench.report import benchmark_report, benchmark_reports
from deployer.bench.results import BenchResult
from tests.support.bench_examples import DIGEST_A, demo_run, partial_run

SCHEMA = json.loads((Path(__file__).parent / "data" / "br_v0_2_json_schema.json").read_text())

#: Which units llm-d's pydantic models accept for each metric (schema_v0_2.py's check_units:
#: UNITS_TIME, UNITS_GEN_LATENCY, UNITS_GEN_THROUGHPUT, UNITS_REQUEST_THROUGHPUT,
#: UNITS_QUANTITY); the JSON Schema only says the unit is one it knows.
UNIT_RULES = {
    ("latency", "time_to_first_token"): {"ms", "s"},
    ("latency", "inter_token_latency"): {"ms/token", "s/token"},
    ("latency", "time_per_output_token"): {"ms/token", "s/token"},
    ("latency", "request_latency"): {"ms", "s"},
    ("throughput", "request_rate"): {"queries/s"},
    ("throughput", "input_token_rate"): {"tokens/s"},
    ("throughput", "output_token_rate"): {"tokens/s"},
    ("throughput", "total_token_rate"): {"tokens/s"},
    ("requests", "input_length"): {"count"},
    ("requests", "output_length"): {"count"},
}


def validate(report: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(json.loads(json.dumps(report)))
    aggregate = report["results"].get("request_performance", {}).get("aggregate", {})
    for (group, name), allowed in UNIT_RULES.items():
        if name in aggregate.get(group, {}):
            assert aggregate[group][name]["units"] in allowed, (group, name)


@pytest.mark.parametrize("model", ["HuggingFaceTB/SmolLM2-135M-Instruct", None])
@pytest.mark.parametrize("result", [demo_run(), partial_run()], ids=["complete", "partial"])
def test_every_report_validates_against_llm_d_s_schema(result: BenchResult, model: str) -> None:
    reports = benchmark_reports(result, model=model)
    assert len(reports) == len(result.points)
    for report in reports:
        validate(report)
        assert report["version"] == "0.2"


def test_one_report_per_load_point_with_its_load_and_figures() -> None:
    result = demo_run()
    reports = benchmark_reports(result, model="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert [r["scenario"]["load"]["standardized"]["concurrency"] for r in reports] == [1, 2, 4]
    assert [r["scenario"]["load"]["standardized"]["stage"] for r in reports] == [0, 1, 2]

    second = reports[1]["results"]["request_performance"]["aggregate"]
    latency, throughput = second["latency"], second["throughput"]
    assert latency["time_to_first_token"] == {
        "units": "ms",
        "mean": 118,
        "p50": 104,
        "p90": 158,
        "p99": 212,
    }
    assert latency["inter_token_latency"]["units"] == "ms/token"
    assert latency["inter_token_latency"]["p99"] == 24.5
    assert latency["request_latency"] == {
        "units": "ms",
        "mean": 4860,
        "p50": 4790,
        "p90": 5220,
        "p99": 5650,
    }
    assert "time_per_output_token" not in latency  # GuideLLM's TPOT includes the first token
    assert throughput["request_rate"] == {"units": "queries/s", "mean": 0.41}
    assert throughput["output_token_rate"] == {"units": "tokens/s", "mean": 52.8}
    point = result.points[1]
    total = point.input_tokens_per_second + point.output_tokens_per_second
    assert throughput["total_token_rate"]["mean"] == pytest.approx(total)
    assert second["requests"]["total"] == point.requests
    assert second["requests"]["input_length"] == {"units": "count", "mean": 256}


def test_the_run_s_identity_and_the_workload_are_in_the_scenario() -> None:
    report = benchmark_report(demo_run(), 0, model="HuggingFaceTB/SmolLM2-135M-Instruct")
    engine = report["scenario"]["stack"][0]
    assert engine["metadata"]["label"] == "smollm2-demo"
    assert engine["metadata"]["cfg_id"] == DIGEST_A
    assert engine["standardized"]["kind"] == "inference_engine"
    assert engine["standardized"]["tool"] == "vllm"
    assert engine["standardized"]["tool_version"] == "0.11.0"
    assert engine["standardized"]["model"] == {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert engine["standardized"]["accelerator"]["model"] == "cpu"
    facts = engine["native"]["config"]["deployer"]
    assert facts["manifest_digest"] == DIGEST_A
    assert facts["model_revision"] == "0f4ba5e7c2d4a8b1e6f3c9d0a7b5e2f18c4d6a3b"

    load = report["scenario"]["load"]["standardized"]
    assert (load["tool"], load["tool_version"], load["source"]) == ("guidellm", "0.8.1", "random")
    assert load["input_seq_len"] == {"distribution": "fixed", "value": 256}
    assert load["output_seq_len"] == {
        "distribution": "gaussian",
        "value": 128,
        "std_dev": 16,
        "max": 192,
    }
    assert report["run"]["time"]["duration"] == "PT25S"
    assert report["run"]["time"]["start"] == "2026-09-14T10:00:00+00:00"


def test_slo_attainment_goodput_and_the_best_point_are_exported() -> None:
    reports = benchmark_reports(demo_run())
    verdicts = [r["results"]["observability"]["deployer"] for r in reports]
    assert [v["meets_slo"] for v in verdicts] == [True, True, False]
    assert [v["best"] for v in verdicts] == [False, True, False]
    assert verdicts[2]["missed"] == ["TTFT p99 396 ms > 300 ms", "ITL p99 39 ms > 30 ms"]
    assert verdicts[1]["attainment"] == {"units": "fraction", "mean": 0.98}
    assert verdicts[1]["goodput"]["units"] == "queries/s"
    assert verdicts[1]["goodput"]["mean"] == pytest.approx(0.41 * 0.98)
    assert verdicts[0]["slo"]["ttftMs"] == {"p99": 300.0}


def test_a_partial_run_is_marked_partial_and_never_has_a_best_point() -> None:
    reports = benchmark_reports(partial_run())
    for report in reports:
        assert "PARTIAL: the engine exited (code 137)" in report["run"]["description"]
        assert "partial" in report["run"]["keywords"]
        verdict = report["results"]["observability"]["deployer"]
        assert verdict["status"] == "partial"
        assert verdict["best"] is False
    complete = benchmark_reports(demo_run())[0]
    assert "PARTIAL" not in complete["run"]["description"]
    assert complete["run"]["keywords"] == ["deployer", "complete"]


def test_a_run_that_finished_no_point_still_exports_why() -> None:
    result = partial_run().model_copy(update={"points": ()})
    (report,) = benchmark_reports(result)
    validate(report)
    assert report["results"] == {
        "observability": {
            "deployer": {
                "status": "partial",
                "reason": "the engine exited (code 137) during concurrency 4",
            }
        }
    }


def test_the_same_result_exports_the_same_ids_and_points_get_their_own() -> None:
    first, again = benchmark_reports(demo_run()), benchmark_reports(demo_run())
    assert first == again
    assert len({r["run"]["uid"] for r in first}) == 3
    assert len({r["run"]["eid"] for r in first}) == 1
    other = benchmark_reports(demo_run(run_id=42))
    assert other[0]["run"]["eid"] != first[0]["run"]["eid"]


def test_a_rate_load_and_a_dataset_workload() -> None:
    from tests.support.bench_examples import point

    dataset = {"file": "prompts.jsonl", "sha256": "0" * 64}
    workload = {
        "workload": {"dataset": dataset},
        "load": {"kind": "rate", "rates": [0.5]},
        "durationSeconds": 30,
    }
    rated = point(0.5, rps=0.5, out_tps=60, ttft=(90, 80, 150), itl=(8, 8, 20),
                  e2e=(4000, 3900, 5000), attainment=1.0, kind="rate")  # fmt: skip
    result = demo_run(workload=workload, points=(rated,))
    (report,) = benchmark_reports(result)
    validate(report)
    load = report["scenario"]["load"]["standardized"]
    assert load["rate_qps"] == 0.5
    assert "concurrency" not in load
    assert load["source"] == "sampled"
    assert load["input_seq_len"] == {"distribution": "other", "value": 256}


def test_the_schema_check_is_live() -> None:
    report = benchmark_report(demo_run(), 0)
    report["results"]["request_performance"]["aggregate"]["latency"]["request_latency"]["units"] = (
        "seconds"
    )
    with pytest.raises(jsonschema.ValidationError):
        validate(report)
    del report["run"]["uid"]
    with pytest.raises(jsonschema.ValidationError):
        validate(report)
