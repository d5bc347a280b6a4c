"""Hand-built benchmark results with the numbers of the demo on a CPU (SmolLM2 under vLLM,
concurrency 1, 2 and 4), for the report, plot and comparison tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deployer.bench.results import BenchResult, BenchStatus, LoadPoint, Quantiles, judge
from deployer.manifest.performance import BenchmarkSpec, SloSpec

#: TTFT p99 300 ms, ITL p99 30 ms: the demo meets it at concurrency 1 and 2, not at 4.
SLO = SloSpec.model_validate({"ttftMs": {"p99": 300}, "itlMs": {"p50": 20, "p99": 30}})
WORKLOAD = BenchmarkSpec.model_validate(
    {
        "workload": {"promptTokens": 256, "outputTokens": {"mean": 128, "stdev": 16, "max": 192}},
        "load": {"kind": "concurrent", "concurrencies": [1, 2, 4]},
        "durationSeconds": 30,
        "warmupSeconds": 5,
    }
)
DIGEST_A = "sha256:" + "a1" * 32
DIGEST_B = "sha256:" + "b2" * 32


def point(
    concurrency: float,
    *,
    rps: float,
    out_tps: float,
    ttft: tuple[float, float, float],
    itl: tuple[float, float, float],
    e2e: tuple[float, float, float],
    attainment: float,
    kind: str = "concurrent",
    slo: SloSpec | None = SLO,
) -> LoadPoint:
    """A load point of 25 s; latencies are (mean, p50, p99) in milliseconds."""
    duration = 25.0
    requests = round(rps * duration)
    output_tokens = round(out_tps * duration)
    input_tokens = requests * 256

    def q(values: tuple[float, float, float]) -> Quantiles:
        mean, p50, p99 = values
        return Quantiles(mean=mean, p50=p50, p90=(p50 + p99) / 2, p99=p99)

    raw = LoadPoint(
        kind=kind,  # type: ignore[arg-type]
        value=concurrency,
        duration_seconds=duration,
        requests=requests,
        requests_per_second=rps,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        input_tokens_per_second=input_tokens / duration,
        output_tokens_per_second=out_tps,
        ttft_ms=q(ttft),
        itl_ms=q(itl),
        e2e_ms=q(e2e),
        attainment=attainment if slo else None,
        goodput=rps * attainment if slo else None,
    )
    return judge(raw, slo)


def demo_run(**changes: Any) -> BenchResult:
    """The demo's baseline: concurrency 1 and 2 meet the SLO, 4 misses TTFT and ITL."""
    points = (
        point(1, rps=0.24, out_tps=30.5, ttft=(62, 58, 81), itl=(7.4, 7.1, 15.2),
              e2e=(4150, 4120, 4700), attainment=1.0),
        point(2, rps=0.41, out_tps=52.8, ttft=(118, 104, 212), itl=(9.2, 8.8, 24.5),
              e2e=(4860, 4790, 5650), attainment=0.98),
        point(4, rps=0.66, out_tps=87.9, ttft=(241, 205, 396), itl=(12.9, 12.1, 38.7),
              e2e=(6010, 5920, 7390), attainment=0.71),
    )  # fmt: skip
    fields: dict[str, Any] = {
        "deployment": "smollm2-demo",
        "run_id": 41,
        "manifest_digest": DIGEST_A,
        "model_revision": "0f4ba5e7c2d4a8b1e6f3c9d0a7b5e2f18c4d6a3b",
        "engine": "vllm 0.11.0",
        "accelerator": "cpu",
        "accelerator_count": 1,
        "tool": "guidellm 0.8.1",
        "started_at": datetime(2026, 9, 14, 10, 0, 0, tzinfo=UTC),
        "finished_at": datetime(2026, 9, 14, 10, 1, 42, tzinfo=UTC),
        "workload": WORKLOAD.model_dump(by_alias=True, mode="json", exclude_none=True),
        "slo": SLO.model_dump(by_alias=True, mode="json", exclude_none=True),
        "points": points,
    }
    fields.update(changes)
    return BenchResult(**fields)


def tuned_run(**changes: Any) -> BenchResult:
    """The same deployment after tuning: faster at every point, and concurrency 4 now meets the
    SLO."""
    points = (
        point(1, rps=0.27, out_tps=34.1, ttft=(55, 51, 70), itl=(6.6, 6.3, 13.0),
              e2e=(3700, 3660, 4200), attainment=1.0),
        point(2, rps=0.48, out_tps=61.6, ttft=(96, 88, 170), itl=(7.9, 7.5, 20.1),
              e2e=(4100, 4050, 4800), attainment=1.0),
        point(4, rps=0.76, out_tps=99.3, ttft=(171, 150, 268), itl=(10.8, 10.2, 28.4),
              e2e=(5200, 5140, 6300), attainment=0.99),
    )  # fmt: skip
    fields: dict[str, Any] = {
        "run_id": 57,
        "manifest_digest": DIGEST_B,
        "started_at": datetime(2026, 9, 14, 11, 30, 0, tzinfo=UTC),
        "finished_at": datetime(2026, 9, 14, 11, 31, 40, tzinfo=UTC),
        "points": points,
    }
    fields.update(changes)
    return demo_run(**fields)


def partial_run() -> BenchResult:
    """The engine died during concurrency 4: two points kept, the run marked partial."""
    whole = demo_run()
    return whole.model_copy(
        update={
            "status": BenchStatus.PARTIAL,
            "reason": "the engine exited (code 137) during concurrency 4",
            "points": whole.points[:2],
        }
    )
