"""``deployer status`` after a destroy: destroyed deployments are kept with their history, hidden
by default (with a line saying how many and how to see them) and listed by ``--all`` with their
last run. The real command on a real SQLite state file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.settings import Settings
from deployer.state import DeploymentStatus, RunStatus, StateStore


def deployer(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        env={**os.environ, "DEPLOYER_HOME": str(home), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    store = StateStore(Settings(home=tmp_path, cache=tmp_path / "cache").database_url)
    try:
        store.upsert_deployment("gone", target_kind="local", status=DeploymentStatus.DESTROYED)
        run = store.start_run("gone", "destroy")
        store.finish_run(run.id, RunStatus.SUCCEEDED)
    finally:
        store.close()
    return tmp_path


def test_destroyed_deployments_are_hidden_and_counted(home: Path) -> None:
    result = deployer(home, "status")
    assert result.returncode == 0, result.stderr
    assert "no deployments; 1 destroyed (deployer status --all lists them)" in result.stdout


def test_all_lists_them_with_their_last_run(home: Path) -> None:
    result = deployer(home, "status", "--all")
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.lstrip().startswith("gone")]
    assert "destroyed" in line
    assert "destroy" in line.replace("destroyed", "", 1)  # the last run's operation

    [entry] = json.loads(deployer(home, "status", "--all", "-o", "json").stdout)
    assert (entry["name"], entry["status"]) == ("gone", "destroyed")
    assert (entry["last_run"]["operation"], entry["last_run"]["status"]) == ("destroy", "succeeded")
    assert json.loads(deployer(home, "status", "-o", "json").stdout) == []
