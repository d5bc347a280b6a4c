"""``deployer quantize MANIFEST`` and ``deployer quantizer install``.

The first runs apply's quantize and gate steps alone and prints the artifact's record; the second
installs the quantizer's virtualenv. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from deployer import api
from deployer.cli.commands import ManifestArg, Output, OutputOpt
from deployer.cli.context import STATE, boundary
from deployer.cli.main import app
from deployer.cli.render import print_json, rendering

quantizer_app = typer.Typer(
    help="The quantizer (llmcompressor in its own virtualenv).", no_args_is_help=True
)
app.add_typer(quantizer_app, name="quantizer")


@app.command()
def quantize(manifest: ManifestArg, output: OutputOpt = Output.text) -> None:
    """Build (or find in the store) a manifest's quantized model and check its quality gate."""
    with boundary():
        with rendering(STATE.err) as events:
            outcome = api.quantize(manifest, STATE.settings(), events)
        record = outcome.record
        if output is Output.json:
            print_json(STATE.console, outcome.to_json())
            return
        verb = "quantized" if outcome.created else "found in store"
        console = STATE.console
        console.print(f"[bold]{escape(record.recipe)}[/]: {verb}, artifact {record.key[:12]}")
        size, source = (
            api.types.human_bytes(record.artifact_bytes),
            api.types.human_bytes(record.source_bytes),
        )
        ratio = record.artifact_bytes / record.source_bytes
        console.print(f"size: {size} (source {source}, {ratio:.0%})")
        console.print(f"quality: {escape(outcome.gate)}")
        console.print(
            f"made in {record.quantize_seconds:.0f}s of calibration ({record.total_seconds:.0f}s "
            f"in all) on {record.calibration_samples} samples of {escape(record.calibration)}"
        )
        console.print(f"path: {outcome.job.artifact_path}", soft_wrap=True, markup=False)


@quantizer_app.command("install")
def install(
    force: Annotated[
        bool, typer.Option("--force", help="Recreate the environment from scratch.")
    ] = False,
) -> None:
    """Install the quantizer into its own virtualenv (idempotent; resumes an interrupted one)."""
    with boundary():
        with rendering(STATE.err) as events:
            env = api.tools.install_quantizer(STATE.settings(), events, force=force)
        STATE.console.print(f"quantizer ready in {env.root}", soft_wrap=True)
