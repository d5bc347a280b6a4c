"""The engine time series: samples kept with a retention, and served as plot data that stays
small for a week of 15 s scrapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployer.server import auth
from deployer.server.app import create_app
from deployer.server.series import series
from deployer.settings import Settings
from deployer.state import DeploymentStatus, EngineSample, StateStore

NOW = datetime.now(UTC).replace(microsecond=0)
WEEK = 7 * 24 * 3600


def point(ts: datetime, endpoint: str = "http://127.0.0.1:9/v1", **values: float) -> EngineSample:
    return EngineSample("alpha", endpoint, ts, dict(values))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    with StateStore(settings.database_url) as store:
        store.upsert_deployment("alpha", target_kind="local", status=DeploymentStatus.HEALTHY)
    return settings


def test_replicas_add_up_and_buckets_average() -> None:
    t0 = datetime(2026, 12, 7, tzinfo=UTC)
    samples = [
        point(t0, "a", running=2, kv_usage=0.1, ttft_p95=0.2),
        point(t0, "b", running=3, kv_usage=0.4, ttft_p95=0.1),
        point(t0 + timedelta(seconds=15), "a", running=1, kv_usage=0.2),
        EngineSample("alpha", "b", t0 + timedelta(seconds=15), {}, error="HTTP 500"),
    ]
    data = series(samples, seconds=60, points=2)  # 30 s buckets
    assert data["step"] == 30
    assert data["running"] == [(5 + 1) / 2]  # 5 at the first scrape, 1 at the second
    assert data["kv_usage"] == [pytest.approx((0.4 + 0.2) / 2)]  # the worst replica's
    assert data["ttft_p95"] == [0.2]
    assert data["errors"] == [
        {"t": int(samples[3].ts.timestamp()), "endpoint": "b", "error": "HTTP 500"}
    ]


def test_retention_prunes_old_samples(settings: Settings) -> None:
    with StateStore(settings.database_url) as store:
        store.add_samples([point(NOW - timedelta(days=9), running=1), point(NOW, running=2)])
        assert store.prune_samples(NOW - timedelta(days=7)) == 1
        [kept] = store.samples("alpha", NOW - timedelta(days=30))
    assert kept.values["running"] == 2


def test_a_week_of_15s_samples_is_a_small_plot(settings: Settings) -> None:
    step = timedelta(seconds=15)
    week = [
        point(NOW - i * step, running=i % 7, waiting=0, kv_usage=0.25, tokens_per_second=31.5)
        for i in range(WEEK // 15)
    ]
    with StateStore(settings.database_url) as store:
        store.add_samples(week)
    token, _ = auth.create_token(settings, "viewer", "viewer")
    with TestClient(create_app(settings)) as client:
        answer = client.get(
            f"/api/v1/deployments/alpha/metrics?seconds={WEEK}&points=300",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text
        assert (
            client.get(
                "/api/v1/deployments/zulu/metrics", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 404
        )
    data = answer.json()
    assert len(answer.content) < 100_000, len(answer.content)
    assert 290 <= len(data["t"]) <= 301
    assert set(data["kv_usage"]) == {0.25}
    assert data["t"] == sorted(data["t"])
    assert json.loads(answer.content)["tokens_per_second"][0] == 31.5


@pytest.fixture
def metrics_page(settings: Settings) -> Iterator[str]:
    with TestClient(create_app(settings)) as client:
        yield client.get("/metrics").text


def test_the_servers_metrics_count_failed_scrapes(metrics_page: str) -> None:
    assert "deployer_engine_scrape_failures_total 0.0" in metrics_page


def test_the_sample_table_holds_every_field_a_sample_has() -> None:
    from deployer.metrics.engine_load import SAMPLE_FIELDS
    from deployer.state.store import SAMPLE_COLUMNS

    assert SAMPLE_COLUMNS == SAMPLE_FIELDS
