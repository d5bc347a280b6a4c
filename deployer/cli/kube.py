"""Kubernetes commands: ``deployer render`` and ``deployer tools install helm``.

Exit codes are made for CI and GitOps gates: ``render --check`` (and ``diff``) exit 0 when nothing
would change, 2 when something would, 1 on an error (like ``terraform plan -detailed-exitcode``
and ``kubectl diff``, which exits 1 for changes, deployer keeps 1 for errors only).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from deployer import api
from deployer.cli.context import STATE, boundary
from deployer.cli.main import app
from deployer.errors import UnsupportedError
from deployer.events import Event, EventBus, EventKind

CHANGES_EXIT_CODE = 2

tools_app = typer.Typer(help="Helper tools deployer runs (helm, guidellm).", no_args_is_help=True)
app.add_typer(tools_app, name="tools")


class RenderFormat(StrEnum):
    values = "values"
    manifests = "manifests"
    argocd = "argocd"
    flux = "flux"
    all = "all"


@app.command()
def render(
    manifest: Annotated[Path, typer.Argument(help="A manifest file.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.", show_default=False)],
    format_: Annotated[
        RenderFormat,
        typer.Option(
            "--format",
            "-f",
            help="values (the chart's values), manifests (helm template), argocd, flux, or all.",
        ),
    ] = RenderFormat.all,
    git_url: Annotated[
        str | None,
        typer.Option("--git-url", help="Git repository the output is committed to (argocd, flux)."),
    ] = None,
    git_path: Annotated[
        str | None,
        typer.Option("--git-path", help="The output folder's path in that repository."),
    ] = None,
    git_branch: Annotated[
        str, typer.Option("--git-branch", help="Branch Argo CD and Flux follow.")
    ] = "main",
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 2 if the output folder is out of date."),
    ] = False,
) -> None:
    """Render a kubernetes manifest to Helm values, plain manifests, Argo CD and Flux objects.

    Deterministic (same manifest and lock, same bytes), validated strictly for two Kubernetes
    versions, carrying the lock's commit and sha256s and no secret. Exit 0: written or up to
    date; 2 (--check): out of date; 1: error.
    """
    with boundary():
        report = api.render(
            manifest,
            out,
            STATE.settings(),
            formats=format_.value,
            git_url=git_url,
            git_path=git_path,
            git_branch=git_branch,
            check=check,
        )
        console = STATE.console
        verb = "would change" if check else "wrote"
        for name in report.created + report.updated:
            console.print(f"{verb} {escape(str(out / name))}", soft_wrap=True)
        console.print(
            f"{report.objects} object(s) valid for Kubernetes {', '.join(report.kube_versions)}; "
            f"{len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged",
            soft_wrap=True,
        )
        console.print(escape(report.pin), soft_wrap=True)
    if check and report.changed:
        raise typer.Exit(CHANGES_EXIT_CODE)


@tools_app.command("install")
def tools_install(
    tool: Annotated[str, typer.Argument(help="The tool to install: helm or guidellm.")] = "helm",
    force: Annotated[bool, typer.Option("--force", help="Reinstall even if verified.")] = False,
) -> None:
    """Install a pinned tool into deployer's cache (idempotent): helm (sha256-verified) or
    guidellm (the load generator of deployer bench, in its own virtualenv)."""
    with boundary():
        if tool not in ("helm", "guidellm"):
            raise UnsupportedError(f"unknown tool {tool!r}", hint="known tools: helm, guidellm")
        events = EventBus()
        events.subscribe(_print_log)
        if tool == "guidellm":
            env = api.tools.install_guidellm(STATE.settings(), events, force=force)
            STATE.console.print(f"guidellm ready at {env.root}", soft_wrap=True)
            return
        helm = api.tools.install_helm(STATE.settings(), events, force=force)
        STATE.console.print(f"helm {helm.version} ready at {helm.path}", soft_wrap=True)


def _print_log(event: Event) -> None:
    if event.kind in (EventKind.LOG, EventKind.WARNING):
        STATE.err.print(escape(event.message), soft_wrap=True)
