"""The measured cost of a deployment, for ``plan`` and ``status``: priced from its latest
complete benchmark of the exact revision (the manifest digest), never from another revision's.

The price per device-hour is the manifest's ``resources.hourlyPrice``, else deployer's catalog
list price (an assumption, and said so); the devices are the plan's. The allocation basis uses
the traffic the server scraped from the engine over the last :data:`TRAFFIC_DAYS` days. See
:mod:`deployer.bench.cost` for what each figure means.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from deployer.api.facts import manifest_digest
from deployer.api.runs import open_reader
from deployer.bench.cost import measured_cost
from deployer.bench.results import BenchResult, BenchStatus
from deployer.errors import PlanError
from deployer.manifest.loader import LoadedManifest
from deployer.planner import Plan
from deployer.settings import Settings
from deployer.sizing.accelerators import Accelerator, lookup
from deployer.sizing.measured import MeasuredCost, Traffic

if TYPE_CHECKING:
    from deployer.state import StateStore

#: How far back the allocation basis looks for the traffic the engine served.
TRAFFIC_DAYS = 7


def price_of(loaded: LoadedManifest, accelerator: Accelerator | None) -> dict[str, Any]:
    """The price per device-hour ``loaded`` is priced at, and where it came from."""
    own = loaded.deployment.spec.resources.hourly_price
    if own is not None:
        return {"hourly_usd_per_device": own, "price_source": "the manifest's hourlyPrice"}
    if accelerator is not None and accelerator.hourly_usd is not None:
        return {
            "hourly_usd_per_device": accelerator.hourly_usd,
            "price_source": f"deployer's list price for {accelerator.name} (assumed)",
        }
    return {"hourly_usd_per_device": None, "price_source": None}


def with_measured_cost(
    plan: Plan, loaded: LoadedManifest, settings: Settings, reader: StateStore | None = None
) -> Plan:
    """``plan`` with the cost its revision's benchmark measured, and a note when there is a
    benchmark but no price or no load that met the SLO. Unchanged without a state or a
    benchmark of this revision. ``reader``: a state already open (a folder's plans share one)."""
    store = reader if reader is not None else open_reader(settings)
    if store is None:
        return plan
    try:
        result = latest_complete(store, plan.deployment, manifest_digest(loaded))
        if result is None:
            return plan
        accelerator = _accelerator(plan.accelerator)
        price = price_of(loaded, accelerator)
        devices = plan.capacity.count if plan.capacity is not None else result.accelerator_count
        cost, note = _priced(result, price, devices, traffic(store, plan.deployment))
    finally:
        if reader is None:
            store.close()
    notes = [*plan.notes, note] if note else plan.notes
    return plan.model_copy(update={"measured_cost": cost, "notes": notes})


def measured_for(store: StateStore, name: str, digest: str | None) -> MeasuredCost | None:
    """What ``status`` shows: the applied revision's measured cost, priced as it was
    benchmarked."""
    if digest is None:
        return None
    result = latest_complete(store, name, digest)
    if result is None:
        return None
    price = {
        "hourly_usd_per_device": result.hourly_usd_per_device,
        "price_source": result.price_source,
    }
    cost, _ = _priced(result, price, result.accelerator_count, traffic(store, name))
    return cost


def latest_complete(store: StateStore, name: str, digest: str) -> BenchResult | None:
    """The newest complete benchmark of ``name`` at manifest ``digest``."""
    for row in store.list_bench_results(name, manifest_digest=digest, limit=20):
        if row.status == BenchStatus.COMPLETE.value:
            return BenchResult.model_validate(row.result)
    return None


def traffic(store: StateStore, name: str, now: datetime | None = None) -> Traffic | None:
    """The generated tokens per second the server scraped from ``name``'s engine, averaged
    over the hours of the last :data:`TRAFFIC_DAYS` days that have scrapes; None without any."""
    since = (now or datetime.now(UTC)) - timedelta(days=TRAFFIC_DAYS)
    rates = [
        value
        for _, values in store.sample_buckets(name, since, 3600)
        if (value := values.get("tokens_per_second")) is not None
    ]
    if not rates:
        return None
    return Traffic(output_tokens_per_second=statistics.fmean(rates), hours=len(rates))


def _priced(
    result: BenchResult, price: dict[str, Any], devices: int, watched: Traffic | None
) -> tuple[MeasuredCost | None, str | None]:
    hourly = price["hourly_usd_per_device"]
    best = result.best()
    if best is None:
        attainment = result.best_attainment()
        seen = f"{attainment:.0%}" if attainment is not None else "not measured"
        return None, (
            f"benchmark run {result.run_id}: no load met the SLO (best attainment {seen}), so "
            "there is no measured cost; the cost shown is assumed"
        )
    if hourly is None:
        return None, (
            f"measured {best.output_tokens_per_second:,.1f} output tokens/s at {best.label} "
            f"(benchmark run {result.run_id}); no price per device-hour for {result.accelerator}: "
            "set spec.resources.hourlyPrice to price it"
        )
    cost = measured_cost(
        result,
        hourly_usd_per_device=hourly,
        devices=devices,
        price_source=price["price_source"],
        traffic=watched,
    )
    return cost, None


def _accelerator(name: str) -> Accelerator | None:
    try:
        return lookup(name)
    except PlanError:  # the CPU, or a name the catalog lacks: no list price
        return None
