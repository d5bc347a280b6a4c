"""Killing `deployer apply` at a bad moment loses nothing: the next apply converges.

The deployer process is killed with SIGKILL (no chance to clean up) while it waits for the real
engine to become healthy. The engine's supervisor lives in its own session and keeps going; the
state database must still open, the killed run must read as interrupted, and the next apply must
adopt the running engine instead of starting a second one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DEMO_MANIFEST
from tests.integration.cli import deployer

pytestmark = pytest.mark.engine
NAME = "smollm2-demo"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    deployer("destroy", NAME, home=path)


def test_apply_killed_while_waiting_converges_on_the_next_apply(home: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployer", "apply", str(DEMO_MANIFEST)],
        env={**os.environ, "DEPLOYER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runtime = home / "deployments" / NAME / "runtime.json"
    deadline = time.monotonic() + 60
    while not runtime.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runtime.exists(), "apply never started the engine"
    time.sleep(2)  # now inside the wait for /health
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    engine_pid = json.loads((home / "deployments" / NAME / "supervisor.json").read_text())[
        "engine_pid"
    ]
    # At once, before any other apply: the dead process's run reads as interrupted.
    [before] = json.loads(deployer("status", "-o", "json", home=home).stdout)
    assert before["last_run"]["status"] == "interrupted"
    assert f"deployer process {proc.pid} is gone" in before["last_run"]["error"]

    again = deployer("apply", str(DEMO_MANIFEST), home=home)

    assert again.code == 0, again.output
    assert "deploy: skip: already running" in again.stdout
    assert "pass: chat: What is the capital of France?" in again.stdout
    [entry] = json.loads(deployer("status", "-o", "json", home=home).stdout)
    assert entry["status"] == "healthy"
    assert entry["pid"] == engine_pid, "the running engine was adopted, not replaced"
    history = deployer("status", NAME, home=home).stdout
    assert "apply interrupted" in history
    assert "is gone" in history
