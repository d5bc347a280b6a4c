"""``deployer bench NAME``: load a deployment against its SLO and show each load point.

The table has a row per load point (and, with ``--cross-check``, the same load measured by
``vllm bench serve`` beside it); below it, the best point that meets the SLO, or that none does
with the best attainment seen. ``--list`` shows the stored results of the deployment's current
revision, ``--show ID`` one of them again.

Every result shown is also drawn and exported (``deployer.api.benchfiles``): its picture and its
llm-d BenchmarkReport v0.2 documents, their paths printed below the table. ``--compare A B``
puts two stored results side by side, metric by metric with the ratio B/A, and draws both.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from deployer import api
from deployer.cli.commands import NameArg, Output, OutputOpt
from deployer.cli.context import STATE, boundary
from deployer.cli.main import app
from deployer.cli.render import print_json, rendering

if TYPE_CHECKING:
    from deployer.api.bench import Benchmark, LoadPoint
    from deployer.api.benchfiles import BenchComparison


@app.command()
def bench(
    name: NameArg,
    cross_check: Annotated[
        bool,
        typer.Option(
            "--cross-check", help="Measure the same load with vllm bench serve too, side by side."
        ),
    ] = False,
    list_: Annotated[
        bool, typer.Option("--list", help="List the stored results of the current revision.")
    ] = False,
    show: Annotated[
        int | None, typer.Option("--show", help="Show a stored result again, by id.")
    ] = None,
    compare: Annotated[
        tuple[int, int] | None,
        typer.Option(
            "--compare",
            metavar="A B",
            help="Put two stored results side by side (ratios B/A) and draw both.",
        ),
    ] = None,
    output: OutputOpt = Output.text,
) -> None:
    """Benchmark a deployment with GuideLLM against its spec.slo (spec.benchmark's load).

    Each result is kept in the state with the revision it measured, drawn (latency against
    throughput with the SLO line, PNG and SVG) and exported as llm-d BenchmarkReport v0.2 JSON
    under <home>/benchmarks/NAME/ID/."""
    with boundary():
        settings = STATE.settings()
        if compare is not None:
            compared = api.benchfiles.compare(compare[0], compare[1], settings)
            if output is Output.json:
                print_json(STATE.console, compared.to_json())
                return
            _render_comparison(compared)
            return
        if list_:
            found = api.bench.benchmarks(name, settings)
            if output is Output.json:
                print_json(STATE.console, [b.to_json() for b in found])
                return
            _render_list(name, found)
            return
        if show is not None:
            result = api.bench.benchmark(show, settings, name)
        else:
            drawn = STATE.err if output is Output.json else STATE.console
            try:
                with rendering(drawn) as events:
                    result = api.bench.bench(name, settings, events, cross_check=cross_check)
            except KeyboardInterrupt:
                STATE.err.print(
                    "interrupted: the load is stopped; the finished load points are kept as a "
                    f"partial result (deployer bench {name} --list)"
                )
                sys.exit(130)
        files = api.benchfiles.write_files(result, settings)
        if output is Output.json:
            print_json(STATE.console, {**result.to_json(), "files": files.to_json()})
            return
        _render(result)
        STATE.console.print(
            f"picture: {escape(str(files.png))} (and .svg); BenchmarkReport v0.2: "
            f"{escape(str(files.report))}"
        )


def _render(stored: Benchmark) -> None:
    result = stored.result
    title = (
        f"{escape(result.deployment)}: {escape(result.tool)} on {escape(result.engine)}, "
        f"{result.accelerator_count} x {escape(result.accelerator)} (result {stored.id})"
    )
    table = Table(title=title, title_justify="left")
    for column in ("load", "tool", "req/s", "out tok/s"):
        table.add_column(column, justify="right" if column != "load" else "left")
    for metric in ("TTFT", "ITL", "E2E"):
        table.add_column(f"{metric} ms p50/p90/p99", justify="right")
    for column in ("attain.", "goodput/s", "meets SLO"):
        table.add_column(column, justify="right")
    if result.cross_check:
        table.caption = "cross-check: the same load with the engine's own vllm bench serve"
    others = {(p.kind, p.value): p for p in result.cross_check}
    for point in result.points:
        _row(table, point, result.tool.split()[0])
        if (same := others.get((point.kind, point.value))) is not None:
            _row(table, same, "cross-check")
    STATE.console.print(table)
    for point in result.points:
        if point.missed:
            STATE.console.print(
                f"  {escape(point.label)} misses: {escape('; '.join(point.missed))}"
            )
    if result.status.value == "partial":
        STATE.console.print(
            f"[yellow]partial result[/]: {escape(result.reason or 'stopped early')} "
            "(kept, never priced from)"
        )
        return
    best = result.best()
    if result.slo is None:
        if best is not None:
            STATE.console.print(f"most output tokens/s: {escape(best.label)} (no spec.slo to meet)")
        return
    if best is not None:
        STATE.console.print(
            f"[green]best load meeting the SLO[/]: {escape(best.label)}, "
            f"{best.output_tokens_per_second:.1f} output tok/s, "
            f"goodput {best.goodput or 0:.2f} req/s"
        )
        return
    attainment = result.best_attainment()
    seen = f"{attainment:.0%}" if attainment is not None else "not measured"
    STATE.console.print(f"[red]no load meets the SLO[/]: best attainment seen {seen}")


def _row(table: Table, point: LoadPoint, tool: str) -> None:
    def triple(name: str) -> str:
        measured = point.metric(name)
        values = (measured.p50, measured.p90, measured.p99)
        return "/".join("-" if v is None else f"{v:,.0f}" for v in values)

    verdict = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[point.meets_slo]
    table.add_row(
        escape(point.label),
        tool,
        f"{point.requests_per_second:.2f}",
        f"{point.output_tokens_per_second:.1f}",
        triple("ttft_ms"),
        triple("itl_ms"),
        triple("e2e_ms"),
        "-" if point.attainment is None else f"{point.attainment:.0%}",
        "-" if point.goodput is None else f"{point.goodput:.2f}",
        verdict,
    )


def _render_list(name: str, found: list[Benchmark]) -> None:
    if not found:
        STATE.console.print(f"no benchmark of {escape(name)}'s current revision yet")
        return
    table = Table(title=f"benchmarks of {escape(name)} (current revision)", title_justify="left")
    for column in ("id", "started", "tool", "status", "points", "best meeting the SLO"):
        table.add_column(column)
    for stored in found:
        result = stored.result
        best = result.best()
        table.add_row(
            str(stored.id),
            result.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(result.tool),
            result.status.value,
            str(len(result.points)),
            escape(best.label) if best else "-",
        )
    STATE.console.print(table)


def _render_comparison(compared: BenchComparison) -> None:
    comparison = compared.comparison
    for side, run in (("A", comparison.a), ("B", comparison.b)):
        STATE.console.print(
            f"{side}: {escape(run.deployment)} run {run.run_id}, manifest "
            f"{run.manifest_digest[:12]}, {escape(run.model_revision or '-')}, "
            f"{escape(run.tool)} on {escape(run.engine)}, {run.started_at:%Y-%m-%d %H:%M} UTC"
            + ("" if run.status.value == "complete" else " (partial)")
        )
    if not comparison.same_revision:
        STATE.console.print("[yellow]different revisions[/]: the manifest or the model differs")
    table = Table(box=None)
    for column in api.benchfiles.COMPARE_COLUMNS:
        table.add_column(column, justify="left" if column in ("load", "figure") else "right")
    for row in comparison.rows():
        table.add_row(*(escape(cell) for cell in row))
    STATE.console.print(table)
    STATE.console.print(f"picture: {escape(str(compared.files.png))} (and .svg)")


@app.command()
def tune(
    manifest: Annotated[Path, typer.Argument(help="The manifest whose spec.tune to search.")],
    output: OutputOpt = Output.text,
) -> None:
    """Serve each trial of spec.tune on this machine, benchmark it against spec.slo, and print
    the best settings as a manifest patch with the gain over the engine's defaults."""
    with boundary():
        settings = STATE.settings()
        drawn = STATE.err if output is Output.json else STATE.console
        try:
            with rendering(drawn) as events:
                found = api.tune.tune(manifest, settings, events)
        except KeyboardInterrupt:
            STATE.err.print(
                "interrupted: the running trial is destroyed; finished trials' benchmarks are "
                "kept (deployer bench NAME-tune-N --list)"
            )
            sys.exit(130)
        if output is Output.json:
            print_json(STATE.console, found.to_json())
            return
        table = Table(title=f"deployer tune {escape(found.deployment)}", title_justify="left")
        for column in ("trial", "settings", "best load meeting the SLO", "out tok/s", "goodput/s"):
            table.add_column(column)
        for trial in found.trials:
            best = trial.benchmark.result.best() if trial.benchmark else None
            table.add_row(
                str(trial.number),
                escape(trial.name),
                escape(best.label) if best else escape(trial.error or "none meets the SLO"),
                f"{best.output_tokens_per_second:.1f}" if best else "-",
                f"{best.goodput:.2f}" if best and best.goodput is not None else "-",
            )
        STATE.console.print(table)
        if found.stopped:
            STATE.console.print(f"[yellow]stopped early[/]: {escape(found.stopped)}")
        if found.best is None:
            STATE.console.print("[red]no trial met the SLO[/]: nothing to recommend")
            return
        gain = (
            f"{found.gain:.2f}x the defaults' goodput" if found.gain else "no defaults to compare"
        )
        if not found.patch:
            STATE.console.print(f"[green]the engine's defaults are best[/] ({gain})")
            return
        STATE.console.print(f"[green]best: trial {found.best}[/] ({gain}); the manifest patch:")
        STATE.console.print(escape(found.patch_yaml()), end="")
