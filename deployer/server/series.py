"""Engine samples as plot data: columns (uPlot's layout), bucketed so that a week of 15 s samples
is a few hundred points, not forty thousand."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from deployer.metrics.engine_load import SAMPLE_FIELDS
from deployer.state import EngineSample
from deployer.state.records import ADDITIVE_SAMPLE_FIELDS

if TYPE_CHECKING:
    from deployer.state import StateStore

#: The series of a plot, in order: what each engine sample holds.
FIELDS = SAMPLE_FIELDS

#: The failed scrapes a plot lists, the last ones.
ERRORS = 20


def series(samples: list[EngineSample], *, seconds: int, points: int) -> dict[str, Any]:
    """``{"t": [unix seconds], field: [value or None], ..., "errors": [...]}``: samples summed
    over a deployment's endpoints at each scrape, then averaged over ``seconds / points`` wide
    buckets (the latency quantiles too: an approximation the page names).

    Worked out here from the samples; :func:`stored_series` has the database do it."""
    step = _step(seconds, points)
    buckets: dict[int, dict[str, list[float]]] = {}
    errors: list[EngineSample] = []
    by_scrape: dict[float, dict[str, float]] = {}
    for x in samples:
        at = x.ts.timestamp()
        if x.error:
            errors.append(x)
            continue
        row = by_scrape.setdefault(at, {})
        for name in FIELDS:
            value = x.values.get(name)
            if value is None:
                continue
            # Loads add up across replicas; KV use and latencies: the worst replica's.
            if name in ADDITIVE_SAMPLE_FIELDS:
                row[name] = row.get(name, 0.0) + value
            else:
                row[name] = max(row.get(name, value), value)
    for at, row in by_scrape.items():
        bucket = buckets.setdefault(int(at) // step * step, {})
        for name, value in row.items():
            bucket.setdefault(name, []).append(value)
    means = [(t, {name: _mean(buckets[t].get(name)) for name in FIELDS}) for t in sorted(buckets)]
    return _columns(step, means, errors[-ERRORS:])


def stored_series(
    store: StateStore, deployment: str, since: datetime, *, seconds: int, points: int
) -> dict[str, Any]:
    """What :func:`series` makes of the deployment's samples since ``since``, with the
    bucketing done in the database (:meth:`StateStore.sample_buckets`): a week of samples is
    never loaded."""
    step = _step(seconds, points)
    return _columns(
        step,
        store.sample_buckets(deployment, since, step),
        store.sample_errors(deployment, since, ERRORS),
    )


def _step(seconds: int, points: int) -> int:
    return max(1, seconds // points)


def _columns(
    step: int, buckets: list[tuple[int, dict[str, float | None]]], errors: list[EngineSample]
) -> dict[str, Any]:
    out: dict[str, Any] = {"t": [t for t, _ in buckets], "step": step}
    for name in FIELDS:
        out[name] = [_round(means.get(name)) for _, means in buckets]
    out["errors"] = [
        {"t": int(x.ts.timestamp()), "endpoint": x.endpoint, "error": x.error} for x in errors
    ]
    return out


def _mean(values: list[float] | None) -> float | None:
    if not values:
        return None
    return sum(values) / len(values)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
