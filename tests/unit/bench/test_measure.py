"""Quantiles, SLO attainment and goodput, counted per request (table-driven)."""

from __future__ import annotations

import pytest

from deployer.bench.measure import (
    PointSamples,
    RequestSample,
    conforms,
    load_point,
    percentile,
    target_attainment,
    thresholds,
)
from deployer.manifest.performance import SloSpec


def _done(ttft: float, itl: float | None, e2e: float, *, measured: bool = True) -> RequestSample:
    return RequestSample("completed", 100, 20, ttft, itl, e2e, measured=measured)


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0.0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
        (list(map(float, range(1, 101))), 0.99, 99.01),
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], fraction: float, expected: float | None
) -> None:
    assert percentile(values, fraction) == (
        pytest.approx(expected) if expected is not None else None
    )


@pytest.mark.parametrize(
    ("slo", "limits", "attainment"),
    [
        ({"ttftMs": {"p50": 100, "p99": 500}}, {"ttft_ms": 500}, 0.99),
        ({"ttftMs": {"p90": 300}, "itlMs": {"p50": 20}}, {"ttft_ms": 300, "itl_ms": 20}, 0.9),
        ({"e2eMs": {"p50": 2000}}, {"e2e_ms": 2000}, 0.5),
        ({"preset": "completion"}, {"ttft_ms": 200, "e2e_ms": 2000}, 0.99),
    ],
)
def test_thresholds_and_target_attainment(
    slo: dict[str, object], limits: dict[str, float], attainment: float
) -> None:
    spec = SloSpec.model_validate(slo)
    assert thresholds(spec) == limits
    assert target_attainment(spec) == attainment


@pytest.mark.parametrize(
    ("sample", "verdict"),
    [
        (_done(100, 10, 900), True),
        (_done(501, 10, 900), False),
        (_done(100, 31, 900), False),
        (_done(500, 30, 900), True),  # at the threshold meets it
        (_done(100, None, 900), None),  # one output token: no ITL, undetermined
    ],
)
def test_a_request_conforms_to_every_threshold(sample: RequestSample, verdict: bool | None) -> None:
    assert conforms(sample, {"ttft_ms": 500, "itl_ms": 30}) is verdict


def test_attainment_and_goodput_per_request() -> None:
    """Ten seconds measured: 6 requests meet TTFT 500 and ITL 30, 2 miss, 1 has no ITL
    (left out), 1 errored (counts against), 2 ended in the warm-up (not counted)."""
    slo = SloSpec.model_validate({"ttftMs": {"p50": 300, "p99": 500}, "itlMs": {"p99": 30}})
    samples = (
        *(_done(200, 20, 800) for _ in range(6)),
        _done(700, 20, 1200),
        _done(200, 45, 1500),
        _done(200, None, 300),
        RequestSample("errored", 100, 0),
        RequestSample("incomplete", 100, 3),
        _done(100, 10, 500, measured=False),
        _done(100, 10, 500, measured=False),
    )
    point = load_point(PointSamples("concurrent", 4, 10.0, samples), slo)
    assert (point.requests, point.errored, point.incomplete) == (9, 1, 1)
    assert point.attainment == pytest.approx(6 / 9)  # 8 determined + 1 errored
    assert point.goodput == pytest.approx(0.6)
    assert point.requests_per_second == pytest.approx(0.9)
    assert point.output_tokens == 9 * 20
    assert point.output_tokens_per_second == pytest.approx(18.0)
    assert point.sent_requests == 13
    assert point.sent_completed == 11
    assert point.itl_ms.mean == pytest.approx((6 * 20 + 20 + 45) / 8)
    assert point.meets_slo is False
    assert point.missed == ("TTFT p99 660 ms > 500 ms", "ITL p99 43 ms > 30 ms")


def test_no_slo_no_attainment() -> None:
    point = load_point(PointSamples("rate", 2, 5.0, (_done(100, 10, 400),)), None)
    assert (point.attainment, point.goodput, point.meets_slo) == (None, None, None)
    assert point.label == "rate 2/s"


def test_min_goodput_is_judged() -> None:
    slo = SloSpec.model_validate({"ttftMs": {"p99": 500}, "minGoodput": 2})
    point = load_point(PointSamples("concurrent", 1, 10.0, (_done(100, 10, 400),) * 5), slo)
    assert point.goodput == pytest.approx(0.5)
    assert point.missed == ("goodput 0.50/s < 2/s",)
