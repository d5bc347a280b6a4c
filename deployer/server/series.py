"""Engine samples as plot data: columns (uPlot's layout), bucketed so that a week of 15 s samples
is a few hundred points, not forty thousand."""

from __future__ import annotations

from typing import Any

from deployer.metrics.engine_load import SAMPLE_FIELDS
from deployer.state import EngineSample

#: The series of a plot, in order: what each engine sample holds.
FIELDS = SAMPLE_FIELDS


def series(samples: list[EngineSample], *, seconds: int, points: int) -> dict[str, Any]:
    """``{"t": [unix seconds], field: [value or None], ..., "errors": [...]}``: samples summed
    over a deployment's endpoints at each scrape, then averaged over ``seconds / points`` wide
    buckets (the latency quantiles too: an approximation the page names)."""
    step = max(1, seconds // points)
    buckets: dict[int, dict[str, list[float]]] = {}
    errors: list[dict[str, Any]] = []
    by_scrape: dict[float, dict[str, float]] = {}
    for x in samples:
        at = x.ts.timestamp()
        if x.error:
            errors.append({"t": int(at), "endpoint": x.endpoint, "error": x.error})
            continue
        row = by_scrape.setdefault(at, {})
        for name in FIELDS:
            value = x.values.get(name)
            if value is None:
                continue
            # Loads add up across replicas; KV use and latencies: the worst replica's.
            if name in ("running", "waiting", "tokens_per_second"):
                row[name] = row.get(name, 0.0) + value
            else:
                row[name] = max(row.get(name, value), value)
    for at, row in by_scrape.items():
        bucket = buckets.setdefault(int(at) // step * step, {})
        for name, value in row.items():
            bucket.setdefault(name, []).append(value)
    times = sorted(buckets)
    out: dict[str, Any] = {"t": times, "step": step}
    for name in FIELDS:
        out[name] = [_mean(buckets[t].get(name)) for t in times]
    out["errors"] = errors[-20:]
    return out


def _mean(values: list[float] | None) -> float | None:
    if not values:
        return None
    return round(sum(values) / len(values), 6)
