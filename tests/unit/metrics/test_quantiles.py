"""Latency quantiles from two readings of a histogram, as Prometheus' histogram_quantile works
them out, and the time-series sample made of two readings of the real vLLM page."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.metrics.engine_load import Histogram, read, sample

PAGE = (Path(__file__).parent / "vllm-0.32.0-cpu.prom").read_text()


def test_a_quantile_is_interpolated_within_its_bucket() -> None:
    # 10 observations: 2 at or under 0.1 s, 8 more at or under 0.5 s.
    histogram = Histogram(count=10, total=2.0, buckets=((0.1, 2), (0.5, 10), (float("inf"), 10)))
    assert histogram.quantile_since(None, 0.2) == pytest.approx(0.1)
    assert histogram.quantile_since(None, 0.5) == pytest.approx(0.1 + 0.4 * 3 / 8)
    assert histogram.quantile_since(None, 0.95) == pytest.approx(0.1 + 0.4 * 7.5 / 8)


def test_only_what_happened_since_the_earlier_reading_counts() -> None:
    earlier = Histogram(count=8, total=1.0, buckets=((0.1, 8), (0.5, 8), (float("inf"), 8)))
    now = Histogram(count=10, total=2.0, buckets=((0.1, 8), (0.5, 10), (float("inf"), 10)))
    assert now.quantile_since(earlier, 0.5) == pytest.approx(0.3)  # both new ones in (0.1, 0.5]
    assert earlier.quantile_since(earlier, 0.5) is None  # nothing new
    assert earlier.quantile_since(now, 0.5) is None  # counts went back: a restarted engine


def test_beyond_the_last_finite_bucket_its_bound_is_the_answer() -> None:
    histogram = Histogram(count=4, total=40.0, buckets=((1.0, 0), (float("inf"), 4)))
    assert histogram.quantile_since(None, 0.5) == 1.0


def test_a_sample_of_two_readings_has_gauges_rate_and_quantiles() -> None:
    first = read(PAGE, at=100.0)
    assert first.generation_tokens is not None
    counter = 'vllm:generation_tokens_total{engine="0",model_name="smollm2-demo"}'
    later_page = PAGE.replace(
        f"{counter} {first.generation_tokens}", f"{counter} {first.generation_tokens + 50}"
    )
    assert later_page != PAGE, "the fixture's counter line changed its form"
    second = read(later_page, at=110.0)
    point = sample(second, first)
    assert point["tokens_per_second"] == pytest.approx(5.0)
    assert point["running"] == second.requests_running
    assert point["kv_usage"] == second.kv_cache_usage
    assert point["ttft_p50"] is None  # no new requests between the two pages
    alone = sample(first, None)
    assert alone["tokens_per_second"] is None
    assert alone["ttft_p50"] is not None  # since the engine started
    assert alone["ttft_p50"] > 0
