"""The server's scraper: every interval, each running engine's metrics into the state store's
time series (``engine_samples``), and samples older than the retention out of it.

A scrape that fails is a sample too (with its reason), so a plot shows the gap and the page says
why; the failures are counted for the server's own ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from deployer import api
from deployer.errors import DeployerError
from deployer.metrics.engine_load import EngineLoad, sample
from deployer.settings import Settings
from deployer.state import EngineSample, StateStore

log = logging.getLogger("deployer.server")


class Scraper:
    """Scrapes on a thread of its own until :meth:`stop`."""

    def __init__(
        self, settings: Settings, store: StateStore, interval: float, retention: timedelta
    ) -> None:
        self._settings = settings
        self._store = store
        self._interval = interval
        self._retention = retention
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous: dict[str, EngineLoad] = {}
        #: Failed scrapes since the server started.
        self.failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scraper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def scrape_once(self) -> list[EngineSample]:
        """One round: every running endpoint's sample, recorded; then the retention applied."""
        now = datetime.now(UTC)
        views = api.status(self._settings)
        loads = api.engine_load(views)
        samples = []
        for view in views:
            endpoints = [r.endpoint for r in view.replicas if r.running] or (
                [view.endpoint] if view.running and view.endpoint else []
            )
            for endpoint in endpoints:
                load = loads.get(endpoint)
                if load is None:
                    continue
                if isinstance(load, str):
                    self.failures += 1
                    samples.append(EngineSample(view.name, endpoint, now, {}, error=load))
                    continue
                values = sample(load, self._previous.get(endpoint))
                self._previous[endpoint] = load
                samples.append(EngineSample(view.name, endpoint, now, values))
        self._store.add_samples(samples)
        self._store.prune_samples(now - self._retention)
        return samples

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scrape_once()
            except DeployerError as exc:  # the state or a target is unwell: try again later
                log.warning("scrape failed: %s", exc.message)
            self._stop.wait(self._interval)
