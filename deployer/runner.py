"""The one path from deployer to a subprocess.

Commands are argv lists, never shell strings. What is logged of them passes through
:func:`deployer.secrets.mask`; secrets travel in the environment or in files, not in argv (argv is
visible to every user of the machine through ``ps``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deployer import secrets
from deployer.errors import CommandError

Argv = Sequence[str | os.PathLike[str]]


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def display(argv: Argv) -> str:
    """A masked, shell-quoted rendering of ``argv`` for logs and errors."""
    return secrets.mask(shlex.join(os.fspath(a) for a in argv))


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return env


def run(
    argv: Argv,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> Completed:
    """Run ``argv`` to completion and capture its output.

    Raises :class:`CommandError` (with the masked command and the tail of its stderr) when it
    cannot start, times out, or, with ``check``, exits non-zero.
    """
    args = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            env=_env(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise CommandError(f"cannot run {display(args)}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{display(args)} timed out after {timeout:.0f}s") from exc
    done = Completed(args, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        tail = secrets.mask("\n".join(proc.stderr.strip().splitlines()[-20:]))
        raise CommandError(
            f"{display(args)} exited with code {proc.returncode}",
            details=tail or None,
        )
    return done


def spawn_detached(
    argv: Argv,
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, outliving deployer, with output appended to ``log``.

    The child gets no standard input and is not in deployer's process group, so Ctrl-C in the
    terminal that ran ``deployer apply`` does not reach it.
    """
    args = [os.fspath(a) for a in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    out: IO[bytes] = open(log, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            args,
            env=_env(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise CommandError(f"cannot run {display(args)}: {exc.strerror}") from exc
    finally:
        out.close()
