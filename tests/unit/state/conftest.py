"""Fixtures for the state store tests: real SQLite files in a temporary folder."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deployer import secrets
from deployer.state import StateStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[StateStore]:
    with StateStore(f"sqlite:///{db_path}") as opened:
        yield opened


@pytest.fixture
def isolated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered by the test are forgotten afterwards."""
    monkeypatch.setattr(secrets, "_values", set())


SqlRunner = Callable[..., None]


@pytest.fixture
def sql(db_path: Path) -> SqlRunner:
    """Change the database behind the store's back, as another process would."""

    def execute(statement: str, *params: object) -> None:
        conn = sqlite3.connect(db_path, timeout=10)
        try:
            conn.execute(statement, params)
            conn.commit()
        finally:
            conn.close()

    return execute


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
