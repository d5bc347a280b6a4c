"""Two runs side by side: matching load points, ratios B/A, the best point of each."""

from __future__ import annotations

import pytest

from deployer.bench.compare import COLUMNS, compare
from tests.support.bench_examples import DIGEST_A, DIGEST_B, demo_run, partial_run, tuned_run


def test_matching_points_carry_both_figures_and_the_ratio_b_over_a() -> None:
    comparison = compare(demo_run(), tuned_run())
    assert [p.label for p in comparison.points] == [
        "concurrency 1",
        "concurrency 2",
        "concurrency 4",
    ]
    at_two = comparison.points[1]
    tokens = at_two.metric("output tokens/s")
    assert (tokens.a, tokens.b) == (52.8, 61.6)
    assert tokens.ratio == pytest.approx(61.6 / 52.8)
    assert tokens.improved is True
    ttft = at_two.metric("TTFT p99")
    assert ttft.ratio == pytest.approx(170 / 212)
    assert ttft.better == "lower"
    assert ttft.improved is True
    assert at_two.metric("ITL p50").a == 8.8
    assert at_two.metric("E2E p99").b == 4800
    assert at_two.metric("SLO attainment").ratio == pytest.approx(1.0 / 0.98)
    assert at_two.metric("goodput").ratio == pytest.approx((0.48 * 1.0) / (0.41 * 0.98))
    assert {row.name for row in at_two.metrics} == {
        "requests/s",
        "output tokens/s",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p99",
        "E2E p50",
        "E2E p99",
        "SLO attainment",
        "goodput",
    }


def test_the_best_slo_meeting_point_of_each_and_their_gain() -> None:
    comparison = compare(demo_run(), tuned_run())
    assert comparison.best_a is not None
    assert comparison.best_b is not None
    assert comparison.best_a.label == "concurrency 2"  # 4 misses the SLO in A
    assert comparison.best_b.label == "concurrency 4"
    assert comparison.best_output_ratio == pytest.approx(99.3 / 52.8)
    assert comparison.points[2].meets_slo_a is False
    assert comparison.points[2].meets_slo_b is True


def test_the_identities_say_what_each_run_measured() -> None:
    comparison = compare(demo_run(), tuned_run())
    assert (comparison.a.manifest_digest, comparison.b.manifest_digest) == (DIGEST_A, DIGEST_B)
    assert (comparison.a.run_id, comparison.b.run_id) == (41, 57)
    assert comparison.a.tool == "guidellm 0.8.1"
    assert comparison.same_revision is False
    assert compare(demo_run(), demo_run(run_id=99)).same_revision is True


def test_points_in_one_run_only_are_listed_as_such() -> None:
    shorter = partial_run()  # concurrency 1 and 2 only
    comparison = compare(shorter, tuned_run())
    assert [p.label for p in comparison.points] == ["concurrency 1", "concurrency 2"]
    assert comparison.only_in_a == ()
    assert comparison.only_in_b == ("concurrency 4",)
    assert comparison.best_a is None  # a partial run is never priced
    assert comparison.best_output_ratio is None
    rows = comparison.rows()
    assert ("concurrency 4", "only in B", "-", "measured", "") in rows
    assert rows[-1][:3] == ("best SLO-meeting point", "output tokens/s", "none (partial run)")


def test_a_rate_point_never_matches_a_concurrency() -> None:
    from tests.support.bench_examples import point

    rated = point(2, rps=0.4, out_tps=50, ttft=(90, 80, 150), itl=(8, 8, 20),
                  e2e=(4000, 3900, 5000), attainment=1.0, kind="rate")  # fmt: skip
    comparison = compare(demo_run(), demo_run(points=(rated,)))
    assert comparison.points == ()
    assert comparison.only_in_b == ("rate 2/s",)
    assert len(comparison.only_in_a) == 3


def test_rows_are_a_printable_table() -> None:
    rows = compare(demo_run(), tuned_run()).rows()
    assert all(len(row) == len(COLUMNS) for row in rows)
    assert ("concurrency 1", "requests/s", "0.24 req/s", "0.27 req/s", "1.13x") in rows
    assert ("", "TTFT p99", "212 ms", "170 ms", "0.80x") in rows
    assert ("", "ITL p99", "24.5 ms", "20.1 ms", "0.82x") in rows
    assert ("", "SLO attainment", "71%", "99%", "1.39x") in rows
    assert ("", "meets SLO", "no", "yes", "") in rows
    assert rows[-1] == (
        "best SLO-meeting point",
        "output tokens/s",
        "concurrency 2: 52.8 tok/s",
        "concurrency 4: 99.3 tok/s",
        "1.88x",
    )
