"""``deployer``: the command-line entry point.

Each command parses its input, calls :mod:`deployer.api`, and renders the result.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Annotated

import typer

from deployer import __version__
from deployer.cli.context import STATE, boundary

app = typer.Typer(
    name="deployer",
    help="Deploy open models from a declarative manifest and prove they answer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"deployer {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="State folder (env DEPLOYER_HOME, default ~/.deployer)."),
    ] = None,
    state_url: Annotated[
        str | None,
        typer.Option(
            "--state-url", help="SQLAlchemy URL of the state store (env DEPLOYER_STATE_URL)."
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    STATE.debug = debug
    STATE.home = home
    STATE.state_url = state_url


def _register() -> None:
    # Command modules register themselves on ``app``; imported here so that ``deployer.cli.main``
    # is the one entry point.
    from deployer.cli import (  # noqa: F401
        bench,
        commands,
        engine,
        kube,
        mirror,
        provision,
        quantize,
        server,
    )


#: How long a command runs before the cyclic garbage collector is on (see :func:`_quiet_start`).
START_UP_SECONDS = 2.0


def _quiet_start() -> None:
    """Keep the cyclic garbage collector off while the command starts.

    Start-up builds tens of thousands of long-lived objects (modules, classes, the pydantic and
    SQLAlchemy schemas) and next to no garbage, yet the collector ran some 190 times through it:
    70 ms of an unchanged apply's 0.7 s here. A short command ends before the timer fires; a long
    one (an engine's start, the server, ``--watch``) then moves what start-up built out of the
    collector's reach and collects as any process does.
    """
    gc.disable()
    timer = threading.Timer(START_UP_SECONDS, _collect_from_now_on)
    timer.daemon = True
    timer.start()


def _collect_from_now_on() -> None:
    gc.freeze()
    gc.enable()


def main() -> None:
    """Every command runs inside the one error boundary: whatever a command lets escape, no
    traceback reaches a user without ``--debug``."""
    _quiet_start()
    _register()
    with boundary():
        app()
