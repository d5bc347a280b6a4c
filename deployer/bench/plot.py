"""Latency against throughput, with the SLO line: the picture of one or more benchmark runs.

One panel per latency metric the SLO sets (TTFT and ITL without one): x is output tokens/s, y
the metric at the SLO's highest percentile for it (p99 unless the SLO only gives a lower one).
Each run is one line, each load point labelled by its concurrency or rate, the SLO target a
horizontal dashed line, each run's best SLO-meeting point (what the price is from) a star. A
partial run is drawn dashed and says so in the legend.

matplotlib is imported inside :func:`draw` (it takes a while to import; no other command pays
for it) and used without pyplot (no global figure, no backend chosen for the process). The SVG
is deterministic: fixed hash salt, no date, text kept as text; the same results give the same
bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deployer.atomic import write_bytes
from deployer.bench.results import METRIC_TITLES, BenchResult, BenchStatus, LoadPoint
from deployer.manifest.performance import PERCENTILES, SloSpec

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: The panels drawn when no run has an SLO.
DEFAULT_METRICS = ("ttft_ms", "itl_ms")
_PANEL_WIDTH, _HEIGHT = 6.0, 4.5


def draw(results: Sequence[BenchResult], png: Path, svg: Path) -> None:
    """Draw ``results`` into ``png`` and ``svg`` (each replaced whole, never left half written).
    Overwrites; the folders must exist. ValueError when ``results`` is empty."""
    if not results:
        raise ValueError("draw() needs at least one benchmark result")
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    panels = panel_metrics(results)
    # The same bytes every time: the SVG's ids from a fixed salt, its text kept as text.
    with rc_context({"svg.hashsalt": "deployer-bench", "svg.fonttype": "none"}):
        figure = Figure(figsize=(_PANEL_WIDTH * len(panels), _HEIGHT), layout="constrained")
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
        for ax, (metric, percentile) in zip(axes, panels, strict=True):
            _panel(ax, results, metric, percentile)
        figure.suptitle(_title(results))
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", fontsize=8)
        png_bytes, svg_bytes = io.BytesIO(), io.BytesIO()
        figure.savefig(png_bytes, format="png", dpi=110, metadata={"Software": None})
        figure.savefig(svg_bytes, format="svg", metadata={"Date": None, "Creator": None})
    write_bytes(png, png_bytes.getvalue())
    write_bytes(svg, svg_bytes.getvalue())


def panel_metrics(results: Sequence[BenchResult]) -> list[tuple[str, str]]:
    """(metric, percentile) per panel: every latency metric an SLO of ``results`` sets, at its
    highest percentile given; TTFT p99 and ITL p99 when none has an SLO."""
    chosen: dict[str, str] = {}
    for slo in (_slo(r) for r in results):
        if slo is None:
            continue
        for metric, target in slo.objectives().items():
            highest = list(target.targets())[-1]
            current = chosen.get(metric)
            if current is None or PERCENTILES.index(highest) > PERCENTILES.index(current):
                chosen[metric] = highest
    if not chosen:
        return [(metric, "p99") for metric in DEFAULT_METRICS]
    return [(metric, chosen[metric]) for metric in METRIC_TITLES if metric in chosen]


def _panel(ax: Axes, results: Sequence[BenchResult], metric: str, percentile: str) -> None:
    ax.set_gid(f"panel-{metric}")
    title = f"{METRIC_TITLES[metric]} {percentile}"
    ax.set_title(title)
    ax.set_xlabel("output tokens/s")
    ax.set_ylabel(f"{title} (ms)")
    ax.grid(True, alpha=0.3)
    for index, result in enumerate(results):
        _run_line(ax, index, result, metric, percentile)
    for target in sorted(_targets(results, metric, percentile)):
        line = ax.axhline(target, color="tab:red", linestyle="--", linewidth=1.2)
        line.set_gid(f"slo-{metric}-{percentile}-{target:g}")
        ax.annotate(
            f"SLO {title} {target:g} ms",
            xy=(0.0, target),
            xycoords=("axes fraction", "data"),
            xytext=(4, 3),
            textcoords="offset points",
            ha="left",
            va="bottom",
            color="tab:red",
            fontsize=8,
        )
    # Room above and to the right for the labels of the highest and fastest points.
    ax.set_xlim(0, ax.get_xlim()[1] * 1.2)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.1)


def _run_line(ax: Axes, index: int, result: BenchResult, metric: str, percentile: str) -> None:
    drawn = [(p, y) for p in result.points if (y := p.metric(metric).at(percentile)) is not None]
    if not drawn:
        return
    drawn.sort(key=lambda pair: pair[0].output_tokens_per_second)
    xs = [p.output_tokens_per_second for p, _ in drawn]
    ys = [y for _, y in drawn]
    partial = result.status != BenchStatus.COMPLETE
    (line,) = ax.plot(
        xs,
        ys,
        marker="o",
        linestyle="--" if partial else "-",
        label=_run_label(result),
        color=f"C{index % 10}",
    )
    line.set_gid(f"run-{index}-{metric}")
    best = result.best()
    for point, y in drawn:
        is_best = point == best
        ax.annotate(
            f"{_point_label(point)}, best" if is_best else _point_label(point),
            xy=(point.output_tokens_per_second, y),
            xytext=(6, -11),
            textcoords="offset points",
            fontsize=8,
            fontweight="bold" if is_best else "normal",
            color=line.get_color(),
        )
        if is_best:
            (star,) = ax.plot(
                [point.output_tokens_per_second],
                [y],
                marker="*",
                markersize=16,
                color=line.get_color(),
                markeredgecolor="black",
                linestyle="none",
            )
            star.set_gid(f"best-{index}-{metric}")


def _targets(results: Sequence[BenchResult], metric: str, percentile: str) -> set[float]:
    targets: set[float] = set()
    for slo in (_slo(r) for r in results):
        objective = None if slo is None else slo.objectives().get(metric)
        if objective is not None and (value := objective.targets().get(percentile)) is not None:
            targets.add(value)
    return targets


def _slo(result: BenchResult) -> SloSpec | None:
    return None if result.slo is None else SloSpec.model_validate(result.slo)


def _point_label(point: LoadPoint) -> str:
    return f"{point.value:g}/s" if point.kind == "rate" else f"c={point.value:g}"


def _run_label(result: BenchResult) -> str:
    run = f"run {result.run_id}" if result.run_id is not None else "run"
    digest = result.manifest_digest.removeprefix("sha256:")[:8]
    label = f"{result.deployment} {run} (manifest {digest}, {result.tool})"
    return f"{label}, partial" if result.status != BenchStatus.COMPLETE else label


def _title(results: Sequence[BenchResult]) -> str:
    names = sorted({r.deployment for r in results})
    return f"{', '.join(names)}: latency against throughput"


__all__ = ["DEFAULT_METRICS", "draw", "panel_metrics"]
