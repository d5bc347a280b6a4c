"""Two benchmark runs side by side (``deployer bench --compare A B``): per load point the figures
of each and the ratio B/A, and the best SLO-meeting point of each.

Pure: two :class:`~deployer.bench.results.BenchResult` in, a frozen :class:`Comparison` out.
Load points match when they have the same kind and value (concurrency 2 with concurrency 2, not
with rate 2/s); a point that only one run has is listed as such. A ratio is B over A, so above 1
is more for throughput, attainment and goodput (better) and more for latencies (worse); each
:class:`MetricRow` says which way is better. The CLI draws :meth:`Comparison.rows`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from deployer.bench.results import METRIC_TITLES, BenchResult, BenchStatus, LoadPoint


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: The columns of :meth:`Comparison.rows`.
COLUMNS = ("load", "metric", "A", "B", "B/A")

Unit = Literal["req/s", "tok/s", "ms", "fraction"]
Better = Literal["higher", "lower"]
#: How a figure is read from a load point.
Reader = Callable[[LoadPoint], float | None]


def _quantile(metric: str, percentile: str) -> Reader:
    return lambda point: point.metric(metric).at(percentile)


#: What is compared at each point: name, unit, which way is better, how to read it.
_METRICS: tuple[tuple[str, Unit, Better, Reader], ...] = (
    ("requests/s", "req/s", "higher", lambda p: p.requests_per_second),
    ("output tokens/s", "tok/s", "higher", lambda p: p.output_tokens_per_second),
    *(
        (f"{METRIC_TITLES[metric]} {percentile}", "ms", "lower", _quantile(metric, percentile))
        for metric in ("ttft_ms", "itl_ms", "e2e_ms")
        for percentile in ("p50", "p99")
    ),
    ("SLO attainment", "fraction", "higher", lambda p: p.attainment),
    ("goodput", "req/s", "higher", lambda p: p.goodput),
)  # fmt: skip


class RunIdentity(_Frozen):
    """Which run a side of the comparison is: what was measured, with what, when."""

    deployment: str
    run_id: int | None
    manifest_digest: str
    model_revision: str | None
    engine: str
    accelerator: str
    tool: str
    started_at: datetime
    status: BenchStatus

    @classmethod
    def of(cls, result: BenchResult) -> RunIdentity:
        return cls(
            deployment=result.deployment,
            run_id=result.run_id,
            manifest_digest=result.manifest_digest,
            model_revision=result.model_revision,
            engine=result.engine,
            accelerator=result.accelerator,
            tool=result.tool,
            started_at=result.started_at,
            status=result.status,
        )


class MetricRow(_Frozen):
    """One figure at one load point in both runs. ``ratio`` is b/a, None when either is missing
    or a is 0."""

    name: str
    unit: Unit
    better: Better
    a: float | None
    b: float | None
    ratio: float | None

    @property
    def improved(self) -> bool | None:
        """Whether B is better than A (None without a ratio, False when equal)."""
        if self.ratio is None:
            return None
        return self.ratio > 1 if self.better == "higher" else self.ratio < 1


class PointComparison(_Frozen):
    """One load point both runs measured."""

    kind: Literal["concurrent", "rate", "search"]
    value: float
    label: str
    metrics: tuple[MetricRow, ...]
    meets_slo_a: bool | None
    meets_slo_b: bool | None

    def metric(self, name: str) -> MetricRow:
        """The row called ``name`` ("output tokens/s", "TTFT p99", ...); KeyError if none."""
        for row in self.metrics:
            if row.name == name:
                return row
        raise KeyError(name)


class Comparison(_Frozen):
    """Run A and run B side by side."""

    a: RunIdentity
    b: RunIdentity
    #: The points both have, in A's order.
    points: tuple[PointComparison, ...]
    #: Labels of points only one run has ("concurrency 8").
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    #: Each run's best SLO-meeting point (None: none meets it, or the run is partial).
    best_a: LoadPoint | None
    best_b: LoadPoint | None

    @property
    def same_revision(self) -> bool:
        """Both runs measured the same manifest and model revision."""
        return (self.a.manifest_digest, self.a.model_revision) == (
            self.b.manifest_digest,
            self.b.model_revision,
        )

    @property
    def best_output_ratio(self) -> float | None:
        """Output tokens/s at B's best SLO-meeting point over A's (the gain that prices
        tokens); None when either has no such point."""
        if self.best_a is None or self.best_b is None:
            return None
        return _ratio(self.best_a.output_tokens_per_second, self.best_b.output_tokens_per_second)

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """The table, one row per figure, under :data:`COLUMNS`, the numbers formatted."""
        table: list[tuple[str, str, str, str, str]] = []
        for point in self.points:
            for index, row in enumerate(point.metrics):
                load = point.label if index == 0 else ""
                table.append(
                    (load, row.name, _text(row.a, row.unit), _text(row.b, row.unit), _times(row))
                )
            table.append(("", "meets SLO", _yes(point.meets_slo_a), _yes(point.meets_slo_b), ""))
        table.extend((label, "only in A", "measured", "-", "") for label in self.only_in_a)
        table.extend((label, "only in B", "-", "measured", "") for label in self.only_in_b)
        best_ratio = self.best_output_ratio
        table.append(
            (
                "best SLO-meeting point",
                "output tokens/s",
                _best(self.best_a, self.a.status),
                _best(self.best_b, self.b.status),
                "" if best_ratio is None else f"{best_ratio:.2f}x",
            )
        )
        return table


def compare(a: BenchResult, b: BenchResult) -> Comparison:
    """A and B side by side; any two results compare (a different revision or workload is what
    a comparison is for: :attr:`Comparison.same_revision` says which it is)."""
    b_points = {(p.kind, p.value): p for p in b.points}
    a_keys = {(p.kind, p.value) for p in a.points}
    matched = tuple(
        _point(point, b_points[(point.kind, point.value)])
        for point in a.points
        if (point.kind, point.value) in b_points
    )
    return Comparison(
        a=RunIdentity.of(a),
        b=RunIdentity.of(b),
        points=matched,
        only_in_a=tuple(p.label for p in a.points if (p.kind, p.value) not in b_points),
        only_in_b=tuple(p.label for p in b.points if (p.kind, p.value) not in a_keys),
        best_a=a.best(),
        best_b=b.best(),
    )


def _point(a: LoadPoint, b: LoadPoint) -> PointComparison:
    rows = tuple(
        MetricRow(
            name=name,
            unit=unit,
            better=better,
            a=read(a),
            b=read(b),
            ratio=_ratio(read(a), read(b)),
        )
        for name, unit, better, read in _METRICS
    )
    return PointComparison(
        kind=a.kind,
        value=a.value,
        label=a.label,
        metrics=rows,
        meets_slo_a=a.meets_slo,
        meets_slo_b=b.meets_slo,
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return b / a


def _text(value: float | None, unit: Unit) -> str:
    if value is None:
        return "-"
    if unit == "fraction":
        return f"{value:.0%}"
    if unit == "ms":
        return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"
    return f"{value:,.2f} {unit}"


def _times(row: MetricRow) -> str:
    return "" if row.ratio is None else f"{row.ratio:.2f}x"


def _yes(meets: bool | None) -> str:
    return {True: "yes", False: "no", None: "-"}[meets]


def _best(point: LoadPoint | None, status: BenchStatus) -> str:
    if point is None:
        return "none (partial run)" if status != BenchStatus.COMPLETE else "none"
    return f"{point.label}: {point.output_tokens_per_second:,.1f} tok/s"


__all__ = ["COLUMNS", "Comparison", "MetricRow", "PointComparison", "RunIdentity", "compare"]
