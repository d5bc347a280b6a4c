"""What a benchmark measured: its load points, each against the SLO, and the best one that meets it.

These are the values every other part of ``deployer bench`` works from: the runner fills them
from GuideLLM's (or ``vllm bench serve``'s) report, the state keeps them as JSON, the report
exporter and the plot read them, and the planner prices tokens from :meth:`BenchResult.best`.

Units are in the names: ``*_ms`` milliseconds, ``*_per_second`` per second of the load point's
measured window (warm-up excluded). ITL is inter-token latency as defined in
:mod:`deployer.manifest.performance` (vLLM's TPOT).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deployer.manifest.performance import PERCENTILES, SloSpec

METRICS = ("ttft_ms", "itl_ms", "e2e_ms")
#: How a metric is named to people.
METRIC_TITLES = {"ttft_ms": "TTFT", "itl_ms": "ITL", "e2e_ms": "E2E"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Quantiles(_Frozen):
    """One latency metric over a load point's requests, in milliseconds."""

    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None

    def at(self, percentile: str) -> float | None:
        return getattr(self, percentile)  # type: ignore[no-any-return]


class LoadPoint(_Frozen):
    """One level of load, run for a while: what it achieved and how fast it answered."""

    #: 'concurrent' (``value`` requests in flight), 'rate' (``value`` requests/s offered) or
    #: 'search' (a concurrency probed by an SLO search).
    kind: Literal["concurrent", "rate", "search"]
    value: float
    #: The measured window, warm-up excluded.
    duration_seconds: float
    #: Requests that completed, failed, and were cut off by the end of the window.
    requests: int
    errored: int = 0
    incomplete: int = 0
    requests_per_second: float
    input_tokens: int
    output_tokens: int
    input_tokens_per_second: float
    output_tokens_per_second: float
    ttft_ms: Quantiles
    itl_ms: Quantiles
    e2e_ms: Quantiles
    #: The fraction of completed requests meeting every per-request objective of the SLO, and
    #: those requests per second (None without an SLO).
    attainment: float | None = None
    goodput: float | None = None
    #: Whether the point meets the SLO (None without one), and every target it misses, as
    #: people read it ("TTFT p99 612 ms > 500 ms").
    meets_slo: bool | None = None
    missed: tuple[str, ...] = ()
    #: What the tool sent for this point, warm-up and cut-off requests included (what the
    #: engine's own counters count): every request it started (one still running when the tool
    #: closed the point is counted, though its report does not list it), and of those its report
    #: lists, the completed ones and their prompt and output tokens (a request cut off before its
    #: first token counts the tool's estimate of its prompt). None where the tool does not say.
    sent_requests: int | None = None
    sent_completed: int | None = None
    sent_input_tokens: int | None = None
    sent_output_tokens: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "rate":
            return f"rate {self.value:g}/s"
        return f"concurrency {self.value:g}"

    def metric(self, name: str) -> Quantiles:
        return getattr(self, name)  # type: ignore[no-any-return]


def judge(point: LoadPoint, slo: SloSpec | None) -> LoadPoint:
    """``point`` with :attr:`LoadPoint.meets_slo` and :attr:`LoadPoint.missed` set from ``slo``
    (its attainment and goodput are the runner's, counted per request)."""
    if slo is None:
        return point.model_copy(update={"meets_slo": None, "missed": ()})
    missed: list[str] = []
    for metric, target in slo.objectives().items():
        measured = point.metric(metric)
        for percentile, limit in target.targets().items():
            value = measured.at(percentile)
            if value is None:
                missed.append(f"{METRIC_TITLES[metric]} {percentile} not measured")
            elif value > limit:
                title = f"{METRIC_TITLES[metric]} {percentile}"
                missed.append(f"{title} {value:,.0f} ms > {limit:g} ms")
    if slo.min_goodput is not None and (point.goodput or 0.0) < slo.min_goodput:
        missed.append(f"goodput {point.goodput or 0:.2f}/s < {slo.min_goodput:g}/s")
    return point.model_copy(update={"meets_slo": not missed, "missed": tuple(missed)})


class BenchStatus(StrEnum):
    #: Every load point ran to its end.
    COMPLETE = "complete"
    #: Stopped early (Ctrl-C, the engine died, a tool failed): the points that finished are
    #: kept, and nothing is priced from it.
    PARTIAL = "partial"


class BenchResult(_Frozen):
    """One ``deployer bench`` run of a deployment, tied to the exact revision it measured."""

    deployment: str
    #: The bench run's id in the state's runs (its steps and events).
    run_id: int | None = None
    #: The manifest digest and the model revision (the lock's commit, or the folder) of what
    #: was measured: results of another revision are never mixed in.
    manifest_digest: str
    model_revision: str | None = None
    #: The model clients name (the served model name), for reports.
    model: str | None = None
    #: The engine and its release, the accelerator and how many (what the price is per).
    engine: str
    accelerator: str
    accelerator_count: int = 1
    #: The price per device-hour the result is priced at, and where it came from (the
    #: manifest's resources.hourlyPrice, or the catalog's list price: an assumption); None: no
    #: price known (the CPU without an hourlyPrice).
    hourly_usd_per_device: float | None = None
    price_source: str | None = None
    #: "guidellm 0.8.1" or "vllm bench serve 0.32.0".
    tool: str
    started_at: datetime
    finished_at: datetime
    status: BenchStatus = BenchStatus.COMPLETE
    #: Why a partial run stopped.
    reason: str | None = None
    #: The manifest's spec.benchmark and spec.slo as applied (camelCase, as written).
    workload: dict[str, Any] = Field(default_factory=dict)
    slo: dict[str, Any] | None = None
    points: tuple[LoadPoint, ...] = ()
    #: The same load measured by the other tool (``--cross-check``).
    cross_check: tuple[LoadPoint, ...] = ()

    def best(self) -> LoadPoint | None:
        """The point to price from: of the points meeting the SLO, the one with the most output
        tokens per second (not the peak of all points); without an SLO, the point with the most
        output tokens per second. None when no point meets the SLO, or the run is partial."""
        if self.status != BenchStatus.COMPLETE:
            return None
        meeting = [p for p in self.points if p.meets_slo is not False]
        return max(meeting, key=lambda p: p.output_tokens_per_second, default=None)

    def best_attainment(self) -> float | None:
        """The highest SLO attainment seen (for "no load meets the SLO: best was 87%")."""
        seen = [p.attainment for p in self.points if p.attainment is not None]
        return max(seen, default=None)


__all__ = [
    "METRICS",
    "METRIC_TITLES",
    "PERCENTILES",
    "BenchResult",
    "BenchStatus",
    "LoadPoint",
    "Quantiles",
    "judge",
]
