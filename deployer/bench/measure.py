"""From requests to a load point: quantiles, SLO attainment and goodput, counted per request.

Pure. Each tool's parser (:mod:`.guidellm`, :mod:`.vllm_bench`) reads its report into
:class:`RequestSample` values and a measured window; :func:`load_point` makes the
:class:`~deployer.bench.results.LoadPoint` from them the same way for both, so two tools' figures
differ only by what they measured.

A request's attainment follows the definition in :mod:`deployer.manifest.performance`: it meets
the SLO when each metric the SLO names is at most that metric's per-request threshold (its target
at the highest percentile given). A completed request without a measurement the SLO needs (ITL
of a request with one output token) is left out of attainment, as GuideLLM does; an errored
request counts against it. Goodput is the conforming completed requests per second of the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from deployer.bench.results import LoadPoint, Quantiles, judge
from deployer.manifest.performance import SloSpec

Status = Literal["completed", "errored", "incomplete"]


@dataclass(frozen=True)
class RequestSample:
    """One request as a tool measured it (milliseconds; None where not measured)."""

    status: Status
    input_tokens: int
    output_tokens: int
    ttft_ms: float | None = None
    itl_ms: float | None = None
    e2e_ms: float | None = None
    #: Whether it falls inside the point's measured window (warm-up and cool-down excluded).
    measured: bool = True


@dataclass(frozen=True)
class PointSamples:
    """A load point's requests, every one the tool sent (warm-up included)."""

    kind: Literal["concurrent", "rate", "search"]
    value: float
    #: The measured window's length in seconds.
    duration_seconds: float
    samples: tuple[RequestSample, ...]
    #: How many requests the tool started in all, when it says (it may have closed the point
    #: while one still ran: that one is not in ``samples``); None: ``samples`` are all.
    started: int | None = None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of ``values``, linearly interpolated between closest ranks
    (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def quantiles(values: Sequence[float]) -> Quantiles:
    if not values:
        return Quantiles()
    return Quantiles(
        mean=sum(values) / len(values),
        p50=percentile(values, 0.50),
        p90=percentile(values, 0.90),
        p99=percentile(values, 0.99),
    )


def thresholds(slo: SloSpec) -> dict[str, float]:
    """Metric -> a single request's threshold in milliseconds (``per_request_ms``)."""
    return {metric: target.per_request_ms() for metric, target in slo.objectives().items()}


def target_attainment(slo: SloSpec) -> float:
    """The share of requests that must conform: the highest percentile the SLO names (0.99 for
    p99), as GuideLLM's goodput search takes it."""
    highest = max(
        int(percentile_name[1:])
        for target in slo.objectives().values()
        for percentile_name in target.targets()
    )
    return highest / 100


def conforms(sample: RequestSample, limits: dict[str, float]) -> bool | None:
    """Whether one completed request meets every threshold; None when one it needs was not
    measured."""
    verdict = True
    for metric, limit in limits.items():
        value = getattr(sample, metric)
        if value is None:
            return None
        if value > limit:
            verdict = False
    return verdict


def load_point(point: PointSamples, slo: SloSpec | None) -> LoadPoint:
    """The measured requests of ``point`` as a judged :class:`LoadPoint`; ``sent_*`` count
    every request the tool sent, warm-up included (what the engine's own counters count)."""
    measured = [s for s in point.samples if s.measured]
    completed = [s for s in measured if s.status == "completed"]
    errored = [s for s in measured if s.status == "errored"]
    duration = point.duration_seconds
    per_second = (lambda n: n / duration) if duration > 0 else (lambda n: 0.0)
    input_tokens = sum(s.input_tokens for s in completed)
    output_tokens = sum(s.output_tokens for s in completed)
    attainment = goodput = None
    if slo is not None and slo.objectives():
        limits = thresholds(slo)
        verdicts = [conforms(s, limits) for s in completed]
        determined = [v for v in verdicts if v is not None]
        conforming = sum(1 for v in determined if v)
        if determined or errored:
            attainment = conforming / (len(determined) + len(errored))
            goodput = per_second(conforming)
    raw = LoadPoint(
        kind=point.kind,
        value=point.value,
        duration_seconds=duration,
        requests=len(completed),
        errored=len(errored),
        incomplete=sum(1 for s in measured if s.status == "incomplete"),
        requests_per_second=per_second(len(completed)),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        input_tokens_per_second=per_second(input_tokens),
        output_tokens_per_second=per_second(output_tokens),
        ttft_ms=quantiles([s.ttft_ms for s in completed if s.ttft_ms is not None]),
        itl_ms=quantiles([s.itl_ms for s in completed if s.itl_ms is not None]),
        e2e_ms=quantiles([s.e2e_ms for s in completed if s.e2e_ms is not None]),
        attainment=attainment,
        goodput=goodput,
        sent_requests=max(point.started or 0, len(point.samples)),
        sent_completed=sum(1 for s in point.samples if s.status == "completed"),
        sent_input_tokens=sum(s.input_tokens for s in point.samples),
        sent_output_tokens=sum(s.output_tokens for s in point.samples),
    )
    return judge(raw, slo)
