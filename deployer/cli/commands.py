"""Commands over manifests and deployments: validate, schema, plan, apply, status, ..."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from deployer import api
from deployer.cli.context import STATE, boundary, report_error, shown
from deployer.cli.main import app
from deployer.cli.render import liveness, print_json, rendering
from deployer.errors import ManifestError

#: ``diff`` (and ``render --check``): something would change.
CHANGES_EXIT_CODE = 2

if TYPE_CHECKING:
    from deployer.api.types import CapacityPlan, Plan, ReplicaState, RunRecord


class Output(StrEnum):
    text = "text"
    json = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json.")]
ManifestArg = Annotated[Path, typer.Argument(help="A manifest file.", show_default=False)]
NameArg = Annotated[str, typer.Argument(help="A deployment's metadata.name.", show_default=False)]


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Manifest files or folders.")],
    output: OutputOpt = Output.text,
) -> None:
    """Check manifests: exit 0 when all are valid, 1 with every problem listed otherwise."""
    console, err = STATE.console, STATE.err
    try:
        loaded = api.validate(paths)
    except ManifestError as exc:
        if output is Output.json:
            print_json(console, api.ValidationReport(problems=exc.problems).to_json())
            raise typer.Exit(1) from exc
        for problem in exc.problems:
            err.print(f"[bold red]error:[/] {shown(problem.message)}", soft_wrap=True)
            if problem.hint:
                err.print(f"  [yellow]hint:[/] {shown(problem.hint)}", soft_wrap=True)
        err.print(f"{len(exc.problems)} problem(s) found")
        raise typer.Exit(1) from exc
    with boundary():
        if output is Output.json:
            print_json(console, api.ValidationReport(manifests=loaded).to_json())
            return
        for m in loaded:
            console.print(f"[green]✓[/] {escape(str(m.path))}:{m.line}  {m.deployment.name}")
        console.print(f"{len(loaded)} manifest(s) valid")


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """Print the manifests' JSON Schema (for editors and CI)."""
    with boundary():
        text = json.dumps(api.schema(), indent=2, sort_keys=True) + "\n"
        if out:
            out.write_text(text)
        else:
            typer.echo(text, nl=False)


#: ``apply --allow-downtime``, and ``plan --allow-downtime`` to see what that apply would do.
AllowDowntimeOpt = Annotated[
    bool,
    typer.Option(
        "--allow-downtime",
        help="Where memory does not hold a new engine beside the serving one, restart in "
        "place (the endpoint is down meanwhile) instead of refusing.",
    ),
]


@app.command()
def plan(
    paths: Annotated[list[Path], typer.Argument(help="Manifest files or folders.")],
    allow_downtime: AllowDowntimeOpt = False,
    output: OutputOpt = Output.text,
) -> None:
    """Show what apply would do, and why, without changing anything."""
    with boundary():
        settings = STATE.settings()
        if len(paths) == 1 and not paths[0].is_dir():
            plans = [api.plan(paths[0], settings, allow_downtime=allow_downtime)]
        else:
            plans = api.gitops.plans(paths, settings, allow_downtime=allow_downtime)
        if output is Output.json:
            dumped = [p.model_dump(mode="json") for p in plans]
            print_json(STATE.console, dumped[0] if len(paths) == 1 and len(plans) == 1 else dumped)
            return
        for index, the_plan in enumerate(plans):
            if index:
                STATE.console.print()
            _print_plan(the_plan)


def _print_plan(the_plan: Plan) -> None:
    console = STATE.console
    table = Table(title=f"plan for {the_plan.deployment}", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", escape(the_plan.model))
    table.add_row("target", the_plan.target)
    table.add_row(
        "accelerator",
        f"{the_plan.accelerator} x{the_plan.accelerator_count}"
        f"  (tensor parallel {the_plan.tensor_parallel_size})",
    )
    kv = the_plan.kv_cache_bytes
    if kv is None and the_plan.capacity is not None:
        kv = the_plan.capacity.kv_cache_bytes_per_device
    table.add_row("KV cache", api.types.human_bytes(kv) + (" per device" if kv else ""))
    table.add_row("context", str(the_plan.max_model_len or "model default"))
    table.add_row("engine", f"{the_plan.engine.package} {the_plan.engine.version}")
    if the_plan.replica_endpoints:
        for host, url in the_plan.replica_endpoints.items():
            table.add_row("endpoint", f"{url}  [dim](host {escape(host)})[/]")
    else:
        table.add_row("endpoint", the_plan.endpoint)
    table.add_row("argv", escape(" ".join(the_plan.engine.args)))
    console.print(table)
    if the_plan.capacity is not None:
        _print_capacity(the_plan.capacity)
    if the_plan.measured_cost is not None:
        console.print(f"[bold green]cost[/], {escape(the_plan.measured_cost.summary())}")
    steps = Table(title="steps", box=None)
    for column in ("step", "action", "why"):
        steps.add_column(column)
    for step in the_plan.steps:
        steps.add_row(step.name, step.action.value, escape(step.reason))
    console.print(steps)
    for note in the_plan.notes:
        console.print(f"[dim]note: {escape(note)}[/]")


def _print_capacity(capacity: CapacityPlan) -> None:
    console = STATE.console
    console.print(
        f"\n[bold]model[/]: {capacity.parameters:,} parameters ({capacity.parameter_source}), "
        f"{capacity.layers} layers, {capacity.attention} with {capacity.kv_heads} KV heads of "
        f"{capacity.head_dim}, {capacity.dtype}; KV cache {capacity.kv_bytes_per_token:,} B/token"
    )
    console.print(f"[dim]facts from {escape(capacity.model_facts)}[/]")
    memory = Table(
        title=f"memory per device: {capacity.accelerator} "
        f"({api.types.human_bytes(capacity.accelerator_memory_bytes)})",
        box=None,
    )
    for column in ("", "bytes", "from"):
        memory.add_column(column)
    for row in capacity.memory_per_device:
        memory.add_row(row.item, api.types.human_bytes(row.bytes), escape(row.source))
    console.print(memory)
    console.print(f"[bold green]verdict[/]: {capacity.verdict}")
    if capacity.replicas > 1:
        console.print(f"replicas: {capacity.replicas}")
    if capacity.cost_per_hour_usd is not None and capacity.cost_per_million_tokens_usd is not None:
        console.print(
            f"cost, assumed: ${capacity.cost_per_hour_usd:.2f}/hour, "
            f"${capacity.cost_per_million_tokens_usd:.3f} per million output tokens at an "
            f"assumed {capacity.assumed_tokens_per_second or 0:,.0f} tokens/s"
        )
    for note in capacity.notes:
        console.print(f"[dim]note: {escape(note)}[/]")


@app.command()
def apply(
    paths: Annotated[list[Path], typer.Argument(help="Manifest files or folders.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every log line.")] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Destroy deployments applied from these folders that they no longer declare.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --prune: only say what would be pruned.")
    ] = False,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first deployment that fails.")
    ] = False,
    allow_downtime: AllowDowntimeOpt = False,
    output: OutputOpt = Output.text,
) -> None:
    """Deploy manifests, wait until each is healthy, and run its smoke checks.

    A folder is reconciled deployment by deployment, in order; one that fails does not stop the
    others (unless --fail-fast), and the exit code is 0 only when every one succeeded.
    """
    console = STATE.err if output is Output.json else STATE.console
    with boundary():
        if len(paths) == 1 and not paths[0].is_dir() and not prune:
            console.print(f"[bold]apply[/] {escape(str(paths[0]))}")
            with rendering(console, verbose=verbose) as events:
                result = api.apply(
                    paths[0], STATE.settings(), events, allow_downtime=allow_downtime
                )
            if output is Output.json:
                print_json(STATE.console, result.to_json())
            else:
                _print_applied(result)
            return
        with rendering(console, verbose=verbose) as events:
            report = api.gitops.apply(
                paths,
                STATE.settings(),
                events,
                prune=prune,
                dry_run=dry_run,
                fail_fast=fail_fast,
                allow_downtime=allow_downtime,
                on_start=lambda m: console.print(
                    f"[bold]apply[/] {escape(str(m.path))} ({m.deployment.name})"
                ),
            )
    if output is Output.json:
        print_json(STATE.console, report.to_json())
    else:
        for manifest, result in report.applied:
            verb = "deployed" if result.changed else "unchanged"
            console.print(f"[green]{manifest.deployment.name} {verb}[/] at {result.endpoint}")
        for manifest, error in report.failed:
            report_error(error, prefix=f"{manifest.deployment.name}: ")
        for manifest in report.not_run:
            console.print(f"[yellow]{manifest.deployment.name} not applied[/] (--fail-fast)")
        for name in report.pruned:
            console.print(f"{'would prune' if report.dry_run else 'pruned'} {name}")
        console.print(
            f"{len(report.applied)} applied, {len(report.failed)} failed"
            + (f", {len(report.not_run)} not run" if report.not_run else "")
            + (f", {len(report.pruned)} {'to prune' if dry_run else 'pruned'}" if prune else "")
        )
    if not report.ok:
        raise typer.Exit(1)


def _print_applied(result: api.ApplyResult) -> None:
    console = STATE.console
    name = result.plan.deployment
    verb = "deployed" if result.changed else "unchanged"
    console.print(
        f"\n[green bold]{name} {verb}[/]: model [bold]{escape(result.plan.served_model_name)}"
        f"[/] at [bold]{result.endpoint}[/]"
    )
    if result.api_key_path is not None:
        console.print(
            f"API key: [bold]deployer key {name}[/]  (kept in {result.api_key_path}, mode 0600)"
        )
        key_expr = f"$(deployer key {name})"
    else:
        console.print(f"API key: from {result.api_key_source}")
        key_expr = "$YOUR_KEY"
    body = json.dumps(
        {
            "model": result.plan.served_model_name,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "temperature": 0,
        }
    )
    console.print(
        "try it:\n"
        f"  curl -s {result.endpoint}/chat/completions "
        f'-H "Authorization: Bearer {key_expr}" '
        f"-H 'Content-Type: application/json' -d '{body}'",
        soft_wrap=True,
        markup=False,
    )


@app.command()
def diff(
    paths: Annotated[list[Path], typer.Argument(help="Manifest files or folders.")],
    output: OutputOpt = Output.text,
) -> None:
    """Show what apply would change, on every target: exit 0 nothing, 2 changes, 1 error.

    Local and ssh: the plan against what runs (spec digest, argv, model, smoke checks);
    kubernetes: also each rendered object against the cluster's.
    """
    with boundary():
        diffs = api.gitops.diff(paths, STATE.settings())
    console = STATE.console
    several = len(diffs) > 1
    if output is Output.json:
        print_json(console, [d.to_json() for d in diffs])
    else:
        for d in diffs:
            if d.error is not None:
                report_error(d.error, prefix=f"{d.name}: " if several else "")
            elif d.changed:
                console.print(f"[yellow]~ {d.name}[/] ({d.target}): {len(d.changes)} change(s)")
                for change in d.changes:
                    console.print(f"    {escape(change)}", soft_wrap=True)
            else:
                console.print(f"[green]= {d.name}[/] ({d.target}): nothing would change")
    if any(d.error for d in diffs):
        raise typer.Exit(1)
    if any(d.changed for d in diffs):
        raise typer.Exit(CHANGES_EXIT_CODE)


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="One deployment (default: all).")] = None,
    all_: Annotated[
        bool,
        typer.Option("--all", "-a", help="Destroyed deployments too, each with its last run."),
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="A live table with each engine's load (requests, KV cache, tokens/s, latency).",
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="Seconds between refreshes of --watch.")
    ] = 2.0,
    output: OutputOpt = Output.text,
) -> None:
    """List deployments with their recorded and live status; with NAME, also its recent runs."""
    with boundary():
        if watch:
            if output is Output.json:
                raise typer.BadParameter(
                    "--watch draws a live table; for a pipeline run status -o json on a timer",
                    param_hint="--watch",
                )
            from deployer.cli.watch import watch as watch_table

            watch_table(name, all_, interval)
            return
        settings = STATE.settings()
        views = api.status(settings, name, include_destroyed=all_)
        if output is Output.json:
            print_json(STATE.console, [v.to_json() for v in views])
            return
        if not views:
            destroyed = len(api.status(settings, include_destroyed=True))
            STATE.console.print(
                f"no deployments; {destroyed} destroyed (deployer status --all lists them)"
                if destroyed
                else "no deployments yet; deployer apply MANIFEST creates one"
            )
            return
        table = Table(box=None)
        for column in (
            "name",
            "status",
            "live",
            "target",
            "endpoint",
            "model",
            "last run",
            "updated",
        ):
            table.add_column(column)
        for v in views:
            live = liveness(v.healthy, v.running)
            table.add_row(
                v.record.name,
                _status_style(v.record.status.value),
                (
                    f"{live} (pid {v.pid}"
                    + (f", engine port {v.engine_port})" if v.engine_port else ")")
                )
                if v.pid
                else live,
                v.record.target_kind,
                v.record.endpoint or "-",
                v.record.served_model_name or "-",
                _run_style(v.last_run),
                v.record.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for r in v.replicas:
                table.add_row(*_replica_row(r))
        STATE.console.print(table)
        if name:
            for v in views:
                if v.measured_cost is not None:
                    STATE.console.print(f"cost, {escape(v.measured_cost.summary())}")
                if v.record.message:
                    STATE.console.print(escape(v.record.message))
            for run, steps in api.history(settings, name, limit=5):
                STATE.console.print(
                    f"run {run.id} {run.operation} {run.status.value} "
                    f"{run.started_at:%Y-%m-%d %H:%M:%S}"
                    + (f"  [red]{escape(run.error)}[/]" if run.error else "")
                )
                for step in steps:
                    STATE.console.print(
                        f"    {step.name:<8} {step.action:<7} {step.status.value:<8} "
                        f"{escape(step.message or '')}"
                    )


def _replica_row(replica: ReplicaState) -> tuple[str, ...]:
    """A replica's line under its deployment in ``deployer status``."""
    live = liveness(replica.healthy, replica.running, "down")
    colour = {"healthy": "green", "running": "yellow"}.get(live, "red")
    facts = [f"pid {replica.pid}"] if replica.pid else []
    if replica.starts and replica.starts > 1:
        facts.append(f"restarted {replica.starts - 1}x")
    if replica.detail:
        facts.append(escape(replica.detail))
    return (
        f"  └ {escape(replica.host)}",
        "",
        f"[{colour}]{live}[/]" + (f" ({', '.join(facts)})" if facts else ""),
        "",
        replica.endpoint or "-",
        "",
        "",
        "",
    )


def _run_style(run: RunRecord | None) -> str:
    """The latest run, as ``apply interrupted``: a run whose process died shows so at once."""
    if run is None:
        return "-"
    colour = {"succeeded": "green", "running": "yellow"}.get(run.status.value, "red")
    return f"{escape(run.operation)} [{colour}]{run.status.value}[/]"


def _status_style(value: str) -> str:
    colour = {"healthy": "green", "unhealthy": "yellow", "failed": "red"}.get(value, "dim")
    return f"[{colour}]{value}[/]"


@app.command()
def logs(
    name: NameArg,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines from the end.")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
    host: Annotated[
        str | None, typer.Option("--host", help="One SSH host's log (default: every host's).")
    ] = None,
) -> None:
    """Print the engine's log (on SSH targets, each host's, prefixed with its name)."""
    with boundary():
        for line in api.logs(name, STATE.settings(), lines, follow, host=host):
            typer.echo(line)


@app.command()
def smoke(
    name: NameArg,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", "-f", help="Use this manifest's checks.")
    ] = None,
    output: OutputOpt = Output.text,
) -> None:
    """Run a deployment's smoke checks again."""
    with boundary():
        drawn = STATE.err if output is Output.json else STATE.console
        with rendering(drawn) as events:
            result = api.smoke(name, STATE.settings(), events, manifest)
        if output is Output.json:
            print_json(STATE.console, result.to_json())
            return
        STATE.console.print(escape(result.report.describe()))
        STATE.console.print(f"[green]{result.report.summary()}[/]")


@app.command()
def destroy(name: NameArg, output: OutputOpt = Output.text) -> None:
    """Stop a deployment and remove its runtime files (history and logs stay)."""
    with boundary():
        drawn = STATE.err if output is Output.json else STATE.console
        with rendering(drawn) as events:
            existed = api.destroy(name, STATE.settings(), events)
        if output is Output.json:
            print_json(STATE.console, api.DestroyResult(deployment=name, existed=existed).to_json())
            return
        STATE.console.print(f"{name} {'destroyed' if existed else 'was already stopped'}")


@app.command()
def key(name: NameArg) -> None:
    """Print a deployment's generated API key (for: export OPENAI_API_KEY=$(deployer key NAME))."""
    with boundary():
        typer.echo(api.api_key(name, STATE.settings()))


@app.command()
def lock(
    manifest: ManifestArg,
    update: Annotated[
        bool, typer.Option("--update", help="Move the lock to what the hub serves now.")
    ] = False,
) -> None:
    """Pin each hub model of a manifest to a commit and its files' sha256 (MANIFEST.lock.yaml).

    Without --update, a lock whose revision has moved on the hub is an error (exit 1).
    """
    with boundary():
        with rendering(STATE.err) as events:
            report = api.lock(manifest, STATE.settings(), events, update=update)
        for name, (action, commit) in report.entries.items():
            STATE.console.print(f"{name}: {action} at {commit}")
        STATE.console.print(f"lockfile: {report.path}")


@app.command()
def fetch(manifest: ManifestArg) -> None:
    """Download and verify a manifest's model into the store (the locked commit, if locked)."""
    with boundary():
        with rendering(STATE.err) as events:
            result = api.fetch(manifest, STATE.settings(), events)
        STATE.console.print(
            f"{result.repo}@{result.commit[:12]}: {len(result.files)} files, "
            f"{api.types.human_bytes(result.total_bytes)} verified; downloaded "
            f"{api.types.human_bytes(result.downloaded_bytes)}, "
            f"reused {api.types.human_bytes(result.reused_bytes)}"
        )
        STATE.console.print(f"snapshot: {result.snapshot}")
