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
from deployer.secrets import mask
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
    with its code; with ``--debug`` the traceback follows. An :class:`OSError` that reached here
    is the environment's (a full disk, a file that cannot be read): one ``error:`` line, exit 1.
    Any other exception is a bug: say so, exit 70. Everything printed, the traceback included,
    passes through :func:`deployer.secrets.mask`, so a secret echoed into an error (a hub that
    repeats the request's headers) is never shown.
    """
    try:
        yield
    except DeployerError as exc:
        report_error(exc)
        _debug_traceback()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        STATE.err.print("interrupted; run the same command again to resume")
        sys.exit(130)
    except OSError as exc:
        _debug_traceback()
        reason = exc.strerror or str(exc)
        text = f"{exc.filename}: {reason}" if exc.filename else reason
        _say(f"[bold red]error:[/] {shown(text)}")
        _say(
            "[yellow]hint:[/] check the file or folder named and its permissions; "
            "--debug shows where it happened"
        )
        sys.exit(1)
    except Exception as exc:
        _debug_traceback()
        _say(
            f"[bold red]internal error:[/] {type(exc).__name__}: {shown(str(exc))}\n"
            "This is a bug in deployer. Run again with --debug for the traceback and report it."
        )
        sys.exit(70)


def report_error(exc: DeployerError, prefix: str = "") -> None:
    """``error: ...`` (after ``prefix``), its details and ``hint: ...`` on stderr. A file with
    several problems shows each with its own hint (a misspelt key's "did you mean" is often the
    second problem, after the missing field it stands for)."""
    problems: list[DeployerError] = list(exc.problems) if isinstance(exc, ManifestError) else [exc]
    for problem in problems:
        _say(f"[bold red]error:[/] {shown(prefix + problem.message)}")
        if problem.details:
            STATE.err.print(mask(problem.details), markup=False, soft_wrap=True)
        if problem.hint:
            _say(f"[yellow]hint:[/] {shown(problem.hint)}")


#: Longest message text shown; a value echoed from hostile input (200,000 characters) is cut.
MAX_SHOWN = 1000


def shown(text: str) -> str:
    """``text`` as an error line shows it: secrets masked, at most :data:`MAX_SHOWN` characters,
    safe inside rich markup."""
    text = mask(text)
    if len(text) > MAX_SHOWN:
        text = f"{text[:MAX_SHOWN]}... ({len(text) - MAX_SHOWN:,} more characters)"
    return escape(text)


def _say(markup: str) -> None:
    STATE.err.print(markup, markup=True, soft_wrap=True)


def _debug_traceback() -> None:
    """With ``--debug``, the current exception's traceback on stderr, secrets masked."""
    if STATE.debug:
        sys.stderr.write(mask(traceback.format_exc()))
        sys.stderr.flush()


def guarded(fn: Callable[[], T]) -> T:
    with boundary():
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover
