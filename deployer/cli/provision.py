"""``deployer provision INVENTORY``: prepare SSH hosts for serving models (Ansible).

Runs ``playbooks/provision.yml`` (see :mod:`deployer.targets.ssh.provision`) on the inventory's
hosts, draws progress while it runs, then prints one row per host (with ``-o json``, the
report's JSON, progress on stderr). Exits 1 with a one-line error when any host failed or was
unreachable, after the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from deployer import api
from deployer.cli.commands import Output, OutputOpt
from deployer.cli.context import STATE, boundary
from deployer.cli.main import app
from deployer.cli.render import print_json, rendering

if TYPE_CHECKING:
    from deployer.api.hosts import GpuFacts, PlaybookResult

#: A host's status (HostStatus values) and its colour.
_STYLE = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red"}


@app.command("provision")
def provision_command(
    inventory: Annotated[
        Path, typer.Argument(help="An inventory file (deployer YAML, Ansible YAML or INI).")
    ],
    hosts: Annotated[
        str | None,
        typer.Option("--hosts", metavar="A,B", help="Only these hosts (comma-separated)."),
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", metavar="GROUP", help="Only this group's hosts.")
    ] = None,
    connect_timeout: Annotated[
        int, typer.Option("--connect-timeout", min=1, help="Seconds to wait for ssh to connect.")
    ] = 10,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every task.")] = False,
    output: OutputOpt = Output.text,
) -> None:
    """Provision SSH hosts: detect GPUs (installing the NVIDIA stack where one is found) and
    prepare the model server's folders. Safe to run again."""
    if hosts is not None and group is not None:
        raise typer.BadParameter("give --hosts or --group, not both", param_hint="--hosts")
    names = [h.strip() for h in hosts.split(",") if h.strip()] if hosts is not None else None
    with boundary():
        loaded = api.hosts.load_inventory(inventory)
        with rendering(STATE.err, verbose=verbose) as events:
            report = api.hosts.provision(
                loaded,
                events=events,
                workdir=STATE.settings().home / "ssh",
                hosts=names,
                group=group,
                connect_timeout=connect_timeout,
            )
        if output is Output.json:
            print_json(STATE.console, report.to_json())
        else:
            _print(report.result)
        error = report.error()
        if error is not None:
            raise error


def _print(result: PlaybookResult) -> None:
    table = Table(title=f"{result.playbook}: {result.seconds:.1f}s", title_justify="left")
    for column in ("host", "address", "status", "ok", "changed", "failed", "unreachable", "gpu"):
        table.add_column(column, justify="right" if column in ("ok", "changed") else "left")
    for host in result.hosts.values():
        facts = api.hosts.GpuFacts.from_host(host)
        table.add_row(
            escape(host.name),
            escape(host.address),
            f"[{_STYLE[host.status]}]{host.status.value}[/]",
            str(host.ok),
            str(host.changed),
            str(host.failed),
            str(host.unreachable),
            escape(_gpu(facts)),
        )
    console = STATE.console
    console.print(table)
    if not result.failed_hosts:
        if result.changed == 0:
            console.print(f"no changes: all {len(result.hosts)} host(s) already provisioned")
        else:
            console.print(f"{result.changed} change(s) on {len(result.hosts)} host(s)")


def _gpu(facts: GpuFacts | None) -> str:
    if facts is None:
        return "-"
    if facts.count == 0:
        return f"{facts.status} ({facts.os_version})"
    parts = [f"{facts.count}x {facts.model or 'NVIDIA GPU'}"]
    if facts.memory_mib:
        parts.append(f"{facts.memory_mib} MiB")
    if facts.driver_version:
        parts.append(f"driver {facts.driver_version}")
    if facts.cuda_version:
        parts.append(f"CUDA {facts.cuda_version}")
    return ", ".join(parts) + f" ({facts.os_version})"
