"""``deployer engine ...`` and ``deployer demo ...``: engine environments and the demo model.

Progress (step lines and a spinner with pip's latest line) goes to stderr; the one result a
script may want (the demo folder) goes to stdout.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from deployer import api
from deployer.cli.context import STATE, boundary
from deployer.cli.main import app
from deployer.errors import PermanentError
from deployer.events import Event, EventBus, EventKind

if TYPE_CHECKING:
    from deployer.api.tools import Device

engine_app = typer.Typer(help="Serving engines, each in its own virtualenv.", no_args_is_help=True)
demo_app = typer.Typer(
    help="The demo model (SmolLM2-135M-Instruct, offline).", no_args_is_help=True
)
app.add_typer(engine_app, name="engine")
app.add_typer(demo_app, name="demo")


class DeviceChoice(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


_DEVICES: dict[DeviceChoice, Device] = {DeviceChoice.cpu: "cpu", DeviceChoice.cuda: "cuda"}


@engine_app.command("install")
def install(
    engine: Annotated[
        str, typer.Argument(help="The engine to install: vllm or llamacpp.")
    ] = "vllm",
    version: Annotated[
        str | None, typer.Option("--version", help="Engine release (default: the tested one).")
    ] = None,
    device: Annotated[
        DeviceChoice | None,
        typer.Option("--device", help="cpu or cuda (default: cuda when nvidia-smi lists a GPU)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Recreate the environment from scratch.")
    ] = False,
) -> None:
    """Install an engine into its own virtualenv (idempotent; resumes an interrupted install).

    llamacpp compiles llama.cpp (llama-cpp-python's server) with the machine's C++ compiler and
    cmake: a few minutes the first time.
    """
    with boundary():
        package = api.tools.default_package(engine, version, _DEVICES[device] if device else None)
        with _progress(f"installing {package.display}") as events:
            env = api.tools.install_engine(STATE.settings(), package, events, force=force)
        STATE.console.print(f"{package.display} ready in {env.root}", soft_wrap=True)


@engine_app.command("wheelhouse")
def wheelhouse(
    engine: Annotated[str, typer.Argument(help="The engine.")] = "vllm",
    python: Annotated[
        str, typer.Option("--python", help="The hosts' Python version, X.Y.")
    ] = f"{sys.version_info.major}.{sys.version_info.minor}",
    version: Annotated[
        str | None, typer.Option("--version", help="Engine release (default: the tested one).")
    ] = None,
    device: Annotated[
        DeviceChoice, typer.Option("--device", help="cpu or cuda: which build the hosts run.")
    ] = DeviceChoice.cpu,
) -> None:
    """Download an engine's wheels for SSH hosts (apply does this when a host needs them)."""
    with boundary():
        if not re.fullmatch(r"3\.\d{1,2}", python):
            raise PermanentError(
                f"--python {python}: expected a version such as 3.11", hint="--python 3.12"
            )
        package = api.tools.default_package(engine, version, _DEVICES[device])
        with _progress(f"downloading {package.display} for Python {python}") as events:
            made = api.tools.prepare_wheelhouse(STATE.settings(), package, python, events)
        STATE.console.print(str(made.archive), soft_wrap=True, markup=False)


@engine_app.command("list")
def list_() -> None:
    """List installed engine environments."""
    with boundary():
        observed = api.tools.list_engines(STATE.settings())
        if not observed:
            STATE.console.print(
                "no engines installed; run: deployer engine install vllm "
                "(or: deployer engine install llamacpp)"
            )
            return
        table = Table("engine", "package", "version", "device", "python", "installed (UTC)")
        table.add_column("path", overflow="fold")
        for item in observed:
            record = item.record
            if record is None:
                table.add_row(
                    "?", item.root.name, "", "", "", "[yellow]incomplete[/]", str(item.root)
                )
                continue
            table.add_row(
                record.engine,
                record.package,
                record.version,
                record.device,
                record.python,
                record.installed_at[:16].replace("T", " "),
                str(item.root),
            )
        STATE.console.print(table)


@demo_app.command("prepare")
def prepare(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if prepared.")] = False,
    gguf: Annotated[
        bool,
        typer.Option(
            "--gguf", help="Only keep the GGUF file (for llama.cpp; needs no engine); print it."
        ),
    ] = False,
) -> None:
    """Prepare the demo model folder offline and print its path.

    The safetensors folder (for vLLM) needs the vLLM engine; the GGUF file beside it (for
    llama.cpp) is kept too.
    """
    with boundary():
        settings = STATE.settings()
        with _progress("preparing the demo model") as events:
            if gguf:
                result = api.tools.prepare_demo_gguf(settings, events, force=force)
            else:
                result = api.tools.prepare_demo_model(settings, events, force=force)
                api.tools.prepare_demo_gguf(settings, events)
        STATE.console.print(str(result), soft_wrap=True, markup=False)


@contextmanager
def _progress(title: str) -> Iterator[EventBus]:
    """An event bus drawn on stderr: step lines above a spinner showing the latest log line."""
    err = STATE.err
    events = EventBus()
    with err.status(escape(title)) as status:

        def draw(event: Event) -> None:
            if event.kind in (EventKind.STEP_STARTED, EventKind.STEP_FINISHED):
                err.print(f"[cyan]•[/] {escape(event.message)}", soft_wrap=True)
            elif event.kind is EventKind.WARNING:
                err.print(f"[yellow]warning:[/] {escape(event.message)}", soft_wrap=True)
            elif event.message.startswith("skip:"):
                err.print(f"[dim]{escape(event.message)}[/]", soft_wrap=True)
            elif event.kind is EventKind.LOG:
                status.update(f"{escape(title)}  [dim]{escape(event.message[:100])}[/]")

        events.subscribe(draw)
        yield events
