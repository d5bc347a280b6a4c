"""``deployer status --watch`` as a process: it ends on Ctrl-C and on SIGTERM, leaving its last
table, even when started from a script that ignores SIGINT (a background job)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _watcher(home: Path, *, ignore_sigint: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "deployer", "status", "--watch", "--interval", "0.2"],
        # TTY_COMPATIBLE: rich draws every refresh into the pipe, so the test sees the first one.
        env={**os.environ, "DEPLOYER_HOME": str(home), "TTY_COMPATIBLE": "1", "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint if ignore_sigint else None,
    )


def _first_refresh(watcher: subprocess.Popen[str]) -> str:
    assert watcher.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "Ctrl-C ends" not in seen and time.monotonic() < deadline:
        line = watcher.stdout.readline()
        if not line:
            break
        seen += line
    assert "Ctrl-C ends" in seen, seen
    return seen


@pytest.mark.parametrize(
    ("number", "ignore_sigint"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "ctrl-c-in-a-background-job", "sigterm"],
)
def test_the_watch_ends_on_a_signal_with_its_last_table(
    tmp_path: Path, number: signal.Signals, ignore_sigint: bool
) -> None:
    watcher = _watcher(tmp_path, ignore_sigint=ignore_sigint)
    try:
        first = _first_refresh(watcher)
        assert "no deployments" in first
        watcher.send_signal(number)
        rest, _ = watcher.communicate(timeout=20)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, rest
    assert "Traceback" not in first + rest
    assert "interrupted" not in rest  # a watch has nothing to resume
