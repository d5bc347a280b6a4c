"""The server under a fleet's worth of state: page and API latency, plot size, memory.

Seeds a state database with DEPLOYMENTS deployments (local, not running), EVENTS events over
their runs and DAYS days of engine samples at 15 s for the first SAMPLED deployments, starts the
real `deployer server` on it, and times (p50, p95 over REQUESTS requests each):
the fleet page, a deployment page, the API's list endpoint (one page of 50) and a week's plot
data. Aims (issue 14): pages p95 < 200 ms, list p95 < 50 ms, a 7-day plot < 100 KB, server RSS
< 200 MB. Baseline in the same run: `deployer status -o json` of the same state (the CLI
answering the same question), printed as a ratio.

    .venv/bin/python benchmarks/server_pages.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
from _common import deployer, table, timed

from deployer.events import Event, EventKind
from deployer.server import auth
from deployer.settings import Settings
from deployer.state import DeploymentStatus, EngineSample, RunStatus, StateStore

SCRAPE = timedelta(seconds=15)


def seed(settings: Settings, deployments: int, events: int, days: float, sampled: int) -> None:
    with StateStore(settings.database_url) as store:
        names = [f"model-{i:04d}" for i in range(deployments)]
        runs = []
        for name in names:
            store.upsert_deployment(name, target_kind="local", status=DeploymentStatus.UNHEALTHY)
            run = store.start_run(name, "apply")
            store.finish_run(run.id, RunStatus.FAILED, "engine did not start")
            runs.append(run.id)
        for i in range(events):
            store.record_event(
                runs[i % len(runs)], Event(kind=EventKind.LOG, message=f"line {i}", ts=time.time())
            )
        now = datetime.now(UTC)
        count = int(timedelta(days=days) / SCRAPE)
        for name in names[:sampled]:
            store.add_samples(
                [
                    EngineSample(
                        name,
                        "http://127.0.0.1:9/v1",
                        now - i * SCRAPE,
                        {"running": i % 5, "waiting": 0, "kv_usage": 0.3, "tokens_per_second": 30},
                    )
                    for i in range(count)
                ]
            )


def percentiles(client: httpx.Client, url: str, requests: int, **kw: object) -> tuple[float, ...]:
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url, **kw)  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
        response.raise_for_status()
    times.sort()
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    return statistics.median(times), p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="100 deployments, 2,000 events, 1 day, 5 requests"
    )
    args = parser.parse_args()
    deployments, events, days, sampled, requests = (
        (100, 2_000, 1.0, 2, 5) if args.quick else (1000, 100_000, 7.0, 10, 40)
    )
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = Settings(home=home, cache=Path(tmp) / "cache")
        seeding = timed(lambda: seed(settings, deployments, events, days, sampled))
        token, _ = auth.create_token(settings, "bench", "viewer")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = (Path(tmp) / "server.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "deployer", "server", "--port", str(port)],
            env={**os.environ, "DEPLOYER_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        client.get("/healthz")
                        break
                    except httpx.HTTPError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
                client.post("/login", data={"token": token})
                assert re.search(r"model-0000", client.get("/").text)
                fleet = percentiles(client, "/", requests)
                page = percentiles(client, "/deployments/model-0000", requests)
                bearer = {"Authorization": f"Bearer {token}"}
                listing = percentiles(
                    client, "/api/v1/deployments?limit=50", requests, headers=bearer
                )
                week = int(timedelta(days=days).total_seconds())
                plot_url = f"/api/v1/deployments/model-0000/metrics?seconds={week}"
                plot = percentiles(client, plot_url, requests, headers=bearer)
                plot_bytes = len(client.get(plot_url, headers=bearer).content)
                rss = psutil.Process(server.pid).memory_info().rss
            cli = statistics.median(
                timed(lambda: deployer("status", "-o", "json", home=home)) for _ in range(3)
            )
        finally:
            server.terminate()
            server.wait(timeout=30)

    def ms(pair: tuple[float, ...]) -> str:
        return f"p50 {pair[0] * 1000:.0f} ms, p95 {pair[1] * 1000:.0f} ms"

    print(
        f"state: {deployments} deployments, {events} events, {days:g} days of 15 s samples for "
        f"{sampled} (seeded in {seeding:.1f} s); {requests} requests each"
    )
    table(
        [
            ("fleet page (aim p95 < 200 ms)", ms(fleet)),
            ("deployment page (aim p95 < 200 ms)", ms(page)),
            ("API list, 50 a page (aim p95 < 50 ms)", ms(listing)),
            (f"plot data, {days:g} days", ms(plot)),
            ("plot size (aim < 100 KB for 7 days)", f"{plot_bytes / 1000:.1f} KB"),
            ("server RSS (aim < 200 MB)", f"{rss / 2**20:.0f} MiB"),
            ("baseline: deployer status -o json", f"{cli * 1000:.0f} ms"),
            ("fleet page p50 / CLI status", f"{fleet[0] / cli:.2f}"),
        ]
    )


if __name__ == "__main__":
    main()
