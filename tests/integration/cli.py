"""Run the ``deployer`` command as a user would: a subprocess, its output and exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def deployer(
    *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> Result:
    full_env = {**os.environ, "DEPLOYER_HOME": str(home), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
