"""deployer's own Prometheus metrics (``GET /metrics`` on the server), read from the state store
at each scrape, so any Grafana can chart the fleet: deployments by status, runs by operation and
outcome with their total duration, and the engine scrapes that failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from deployer.state import DeploymentStatus, StateStore


class _StateCollector(Collector):
    def __init__(self, store: StateStore, scrape_failures: int) -> None:
        self._store = store
        self._scrape_failures = scrape_failures

    def collect(self) -> Iterator[Metric]:
        deployments = self._store.list_deployments(include_destroyed=True)
        by_status = Counter(d.status for d in deployments)
        gauge = GaugeMetricFamily(
            "deployer_deployments", "Deployments by recorded status.", labels=["status"]
        )
        for status in DeploymentStatus:
            gauge.add_metric([status.value], by_status.get(status, 0))
        yield gauge
        totals = self._store.run_totals()
        runs = CounterMetricFamily(
            "deployer_runs",
            "Finished runs by operation and outcome.",
            labels=["operation", "status"],
        )
        seconds = CounterMetricFamily(
            "deployer_run_duration_seconds",
            "Total seconds of finished runs by operation and outcome.",
            labels=["operation", "status"],
        )
        for (operation, outcome), (count, duration) in sorted(totals.items()):
            runs.add_metric([operation, outcome], count)
            seconds.add_metric([operation, outcome], duration)
        yield runs
        yield seconds
        failures = CounterMetricFamily(
            "deployer_engine_scrape_failures",
            "Engine metrics pages that could not be read since the server started.",
        )
        failures.add_metric([], self._scrape_failures)
        yield failures


def exposition(store: StateStore, scrape_failures: int = 0) -> tuple[str, str]:
    """The metrics page and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StateCollector(store, scrape_failures))
    return generate_latest(registry).decode(), CONTENT_TYPE_LATEST
