"""Engine samples bucketed by the database (what the server's plot endpoint serves) are what the
Python bucketing of the same samples makes of them, on every backend."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from deployer.metrics.engine_load import SAMPLE_FIELDS
from deployer.server.series import series, stored_series
from deployer.state import EngineSample, StateStore

#: A whole number of days since the epoch: bucket edges of every step below fall on it.
T0 = datetime(2026, 12, 7, tzinfo=UTC)
US = timedelta(microseconds=1)
ENDPOINTS = ("http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1", "http://10.0.0.3:8000/v1")


def _seed(store: StateStore) -> list[datetime]:
    """Scrapes of three endpoints around T0: missing values, failed scrapes, endpoints absent
    from some scrapes, scrapes a microsecond either side of bucket edges; another deployment's
    samples at the same times. The scrape times, oldest first."""
    rng = random.Random(14)

    def values() -> dict[str, float | None]:
        return {
            name: None if rng.random() < 0.2 else round(rng.uniform(0, 40), 3)
            for name in SAMPLE_FIELDS
        }

    edges = [
        T0 - US,
        T0,
        T0 + timedelta(seconds=30) - US,
        T0 + timedelta(seconds=30),
        T0 + timedelta(seconds=59, microseconds=999_600),  # SQLite's %s would round it up
        T0 + timedelta(seconds=60),
        T0 + timedelta(seconds=3599, microseconds=999_999),
        T0 + timedelta(seconds=3600),
    ]
    regular = [T0 - timedelta(seconds=90) + i * timedelta(seconds=7.5) for i in range(60)]
    times = sorted({*edges, *regular})
    for ts in times:
        scrape = []
        for endpoint in ENDPOINTS:
            roll = rng.random()
            if roll < 0.1:
                continue  # not scraped this time
            if roll < 0.25:
                scrape.append(EngineSample("alpha", endpoint, ts, {}, error="HTTP 503"))
            else:
                scrape.append(EngineSample("alpha", endpoint, ts, values()))
            scrape.append(EngineSample("beta", endpoint, ts, {"running": 1000.0}))
        store.add_samples(scrape)
    # An empty error is no failure (the Python bucketing reads it so), joining a scrape.
    store.add_samples(
        [
            EngineSample(
                "alpha",
                "http://10.0.0.4:8000/v1",
                T0 + timedelta(seconds=45),
                {"running": 7.0},
                error="",
            )
        ]
    )
    # A scrape that measured nothing (a bucket of None), one that only failed (no bucket), and
    # more failures than a plot lists, some at one time (then in the order written).
    nothing = T0 + timedelta(hours=2)
    store.add_samples([EngineSample("alpha", ENDPOINTS[0], nothing, {})])
    failed = T0 + timedelta(hours=3)
    store.add_samples([EngineSample("alpha", e, failed, {}, error=f"down {e}") for e in ENDPOINTS])
    for i in range(25):
        ts = T0 + timedelta(hours=4, seconds=i // 3)
        store.add_samples([EngineSample("alpha", ENDPOINTS[1], ts, {}, error=f"timeout {i}")])
    return times


@pytest.mark.parametrize(
    ("seconds", "points"), [(60, 60), (700, 100), (600, 20), (3600, 60), (7200, 20), (86400, 300)]
)
def test_the_database_buckets_samples_as_python_does(
    store: StateStore, seconds: int, points: int
) -> None:
    times = _seed(store)
    for since in (times[0] - timedelta(days=1), T0, T0 + timedelta(seconds=30) - US):
        expected = series(store.samples("alpha", since), seconds=seconds, points=points)
        got = stored_series(store, "alpha", since, seconds=seconds, points=points)
        assert got == expected, (seconds, points, since)
    # The samples above do reach what the comparison is about.
    assert len(expected["errors"]) == 20
    assert expected["errors"][-1]["error"] == "timeout 24"
    assert any(v is None for v in expected["ttft_p50"])
    assert any(
        all(expected[name][i] is None for name in SAMPLE_FIELDS) for i in range(len(got["t"]))
    )


def test_scrapes_combine_across_endpoints_before_buckets_average(store: StateStore) -> None:
    store.add_samples(
        [
            EngineSample("alpha", "a", T0, {"running": 2.0, "kv_usage": 0.1, "ttft_p95": 0.2}),
            EngineSample("alpha", "b", T0, {"running": 3.0, "kv_usage": 0.4, "itl_p50": None}),
        ]
    )
    store.add_samples([EngineSample("alpha", "a", T0 + timedelta(seconds=15), {"running": 1.0})])
    [(start, means)] = store.sample_buckets("alpha", T0, 30)
    assert start == int(T0.timestamp())
    assert means["running"] == (5 + 1) / 2  # 5 at the first scrape, 1 at the second
    assert means["kv_usage"] == 0.4  # the worst endpoint's; the second scrape has none
    assert means["ttft_p95"] == 0.2
    assert means["itl_p50"] is None
    assert store.sample_buckets("beta", T0, 30) == []
    with pytest.raises(ValueError, match="step 0"):
        store.sample_buckets("alpha", T0, 0)
