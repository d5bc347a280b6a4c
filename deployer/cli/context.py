"""Shared CLI state: global options, the console, and the one error boundary."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

from rich.console import Console
from rich.markup import escape

from deployer.errors import DeployerError, ManifestError
from deployer.settings import Settings

T = TypeVar("T")


@dataclass
class CliState:
    debug: bool = False
    home: Path | None = None
    state_url: str | None = None
    console: Console = field(default_factory=lambda: _console(sys.stdout))
    err: Console = field(default_factory=lambda: _console(sys.stderr))

    def settings(self) -> Settings:
        return Settings.from_env(home=self.home, state_url=self.state_url)


def _console(stream: TextIO) -> Console:
    # Piped output (CI logs, scripts) is not squeezed into 80 columns: long lines stay whole.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(file=stream, highlight=False, soft_wrap=True, width=width)


STATE = CliState()


@contextmanager
def boundary() -> Iterator[None]:
    """The one place errors become exit codes and one-line messages.

    A :class:`DeployerError` prints ``error: ...`` (plus ``hint: ...`` and details) and exits
    with its code; with ``--debug`` the traceback follows. Any other exception is a bug: say so.
    """
    try:
        yield
    except DeployerError as exc:
        err = STATE.err
        # A file with several problems shows each with its own hint (a misspelt key's "did you
        # mean" is often the second problem, after the missing field it stands for).
        problems: list[DeployerError] = (
            list(exc.problems) if isinstance(exc, ManifestError) else [exc]
        )
        for problem in problems:
            err.print(f"[bold red]error:[/] {escape(problem.message)}", markup=True, soft_wrap=True)
            if problem.details:
                err.print(problem.details, markup=False, soft_wrap=True)
            if problem.hint:
                err.print(f"[yellow]hint:[/] {escape(problem.hint)}", markup=True, soft_wrap=True)
        if STATE.debug:
            traceback.print_exc()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        STATE.err.print("interrupted; run the same command again to resume")
        sys.exit(130)
    except Exception as exc:
        if STATE.debug:
            traceback.print_exc()
        STATE.err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
            "This is a bug in deployer. Run again with --debug for the traceback and report it.",
            markup=True,
            soft_wrap=True,
        )
        sys.exit(70)


def guarded(fn: Callable[[], T]) -> T:
    with boundary():
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover
