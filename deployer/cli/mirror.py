"""``deployer mirror serve``: serve local model folders as a Hugging Face-compatible hub.

For air-gapped sites: point deployer (``spec.model.endpoint``) or any huggingface_hub client
(``HF_ENDPOINT``) at the printed URL. The URL and the repos go to stdout; one line per request
goes to stderr.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deployer import api
from deployer.cli.context import STATE, boundary
from deployer.cli.main import app

if TYPE_CHECKING:
    from deployer.api.mirror import MirrorRequest

mirror_app = typer.Typer(
    help="A local Hugging Face-compatible model mirror (for air-gapped sites).",
    no_args_is_help=True,
)
app.add_typer(mirror_app, name="mirror")


@mirror_app.command("serve")
def serve(
    repo: Annotated[
        list[str],
        typer.Option(
            "--repo",
            metavar="ORG/NAME=FOLDER",
            help="A model folder and the repo id to serve it as; repeat for several repos.",
        ),
    ],
    host: Annotated[
        str,
        typer.Option(
            "--host", metavar="HOST", help="Address to bind (the default keeps it on this machine)."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", help="Port to bind (0: any free port).")
    ] = 8089,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print each request.")] = False,
) -> None:
    """Serve model folders until Ctrl-C (blocks; each folder is hashed once at start)."""
    specs = [_parse_spec(spec) for spec in repo]
    with boundary():
        repos = []
        for repo_id, folder in specs:
            STATE.err.print(f"hashing {folder} ...", markup=False)
            repos.append(api.mirror.MirrorRepo.from_folder(repo_id, folder))
        mirror = api.mirror.Mirror(
            repos, host=host, port=port, on_request=None if quiet else _print_request
        )
        url = mirror.start()
    out = STATE.console
    out.print(url, markup=False)
    for served in repos:
        commit = served.refs[served.default_branch]
        files = len(served.commits[commit].files)
        line = f"  {served.repo_id}  {served.default_branch} = {commit}  ({files} files)"
        out.print(line, markup=False)
    out.print(f"use it with: HF_ENDPOINT={url}  (Ctrl-C stops)", markup=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        STATE.err.print("stopped")
    finally:
        mirror.stop()


def _parse_spec(spec: str) -> tuple[str, Path]:
    repo_id, sep, folder = spec.partition("=")
    org, _, name = repo_id.partition("/")
    if not sep or not folder or not org or not name or "/" in name:
        raise typer.BadParameter(f"expected ORG/NAME=FOLDER, got {spec!r}", param_hint="--repo")
    return repo_id, Path(os.path.expanduser(folder))


def _print_request(request: MirrorRequest) -> None:
    ranged = f" [{request.range}]" if request.range else ""
    line = f"{request.status} {request.method} {request.path}{ranged} {request.bytes_sent} B"
    STATE.err.print(line, markup=False, highlight=False)
