"""What a token costs, priced from a benchmark of the exact deployment instead of an assumption.

Two bases, both from the hourly price of the deployment's devices (the manifest's
``resources.hourlyPrice``, else deployer's catalog list price: an assumption, and said so):

- **usage**: the price of the device time a token takes when the deployment is kept busy at the
  best load that meets the SLO (:meth:`~deployer.bench.results.BenchResult.best`): the hour's
  price over the tokens that load serves in an hour. What a token costs at best; the floor.
- **allocation**: the hour is paid whether it is used or not: the price of the hours over the
  tokens the deployment actually generated in them, from the engine's own counters as the
  server scrapes them (``engine_samples``). Without such samples there is no allocation figure,
  only the note that it equals the usage figure at full use and doubles at half use.

Output tokens carry the whole price in ``per_million_output``; ``per_million_tokens`` spreads it
over input and output tokens together (the benchmark's own mix). Nothing here reads the state or
the network: callers hand in the result, the price and the observed rate. The figures are a
:class:`~deployer.sizing.measured.MeasuredCost`, which a plan carries.
"""

from __future__ import annotations

from deployer.bench.results import BenchResult, LoadPoint
from deployer.sizing.measured import MeasuredCost, Traffic


def measured_cost(
    result: BenchResult,
    *,
    hourly_usd_per_device: float,
    devices: int,
    price_source: str,
    traffic: Traffic | None = None,
) -> MeasuredCost | None:
    """The cost per token from ``result``'s best SLO-meeting point; None when it has none (a
    partial run, or no load met the SLO: never a cost of zero)."""
    best = result.best()
    if best is None or best.output_tokens_per_second <= 0:
        return None
    per_hour = hourly_usd_per_device * devices
    allocated = None
    if traffic is not None and traffic.output_tokens_per_second > 0:
        allocated = _per_million(per_hour, traffic.output_tokens_per_second)
    return MeasuredCost(
        run_id=result.run_id,
        measured_at=result.finished_at,
        tool=result.tool,
        load=best.label,
        output_tokens_per_second=best.output_tokens_per_second,
        input_tokens_per_second=best.input_tokens_per_second,
        hourly_usd_per_device=hourly_usd_per_device,
        devices=devices,
        price_source=price_source,
        per_million_output=_per_million(per_hour, best.output_tokens_per_second),
        per_million_tokens=_per_million(per_hour, _all_tokens(best)),
        traffic=traffic,
        allocated_per_million_output=allocated,
    )


def _all_tokens(point: LoadPoint) -> float:
    return point.output_tokens_per_second + point.input_tokens_per_second


def _per_million(per_hour: float, tokens_per_second: float) -> float:
    return per_hour / (tokens_per_second * 3600) * 1_000_000
